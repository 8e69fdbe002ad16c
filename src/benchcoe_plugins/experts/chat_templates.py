"""Which experts cannot render a chat, known from their local files before any expert loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from benchcoe_plugins.experts.spec import ExpertSpec

TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def has_chat_template(folder: Path) -> bool | None:
    """True/False for a local Hugging Face folder with a tokenizer config; None when unknown."""
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    if any((folder / name).is_file() for name in TEMPLATE_FILES):
        return True
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return None


def experts_without_chat_template(specs: Mapping[str, ExpertSpec]) -> list[str]:
    missing = []
    for name, spec in specs.items():
        weights = spec.weights_reference()
        tokenizer = spec.model_args.get("tokenizer")
        folder = Path(tokenizer if isinstance(tokenizer, str) else weights or "").expanduser()
        if weights and folder.is_dir() and has_chat_template(folder) is False:
            missing.append(name)
    return missing
