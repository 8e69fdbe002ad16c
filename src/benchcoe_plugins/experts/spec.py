"""What an expert is: a harness model name plus its arguments, and a stable identity."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# model_args keys whose value names the expert's weights (a hub id or a local folder).
WEIGHT_KEYS = ("pretrained", "model", "path", "model_path", "model_name_or_path", "log", "records")
MODALITIES = ("text", "vision")


def looks_like_local_path(value: str) -> bool:
    """A hub id is ``org/name``; a value starting like a path is meant to be local."""
    return value.startswith(("/", "./", "../", "~")) or value.count("/") > 1


def _weights_fingerprint(value: str) -> str:
    """Names, sizes and mtimes of a local path's files, so retrained weights change it."""
    path = Path(value).expanduser()
    if not path.exists():
        return value
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path.parent)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{path.resolve()}#{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class ExpertSpec:
    """One expert of the pool as the config file names it."""

    name: str
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    modality: str = "text"
    handles_text_only: bool = True
    isolated: bool = False

    def weights_reference(self) -> str | None:
        for key in WEIGHT_KEYS:
            value = self.model_args.get(key)
            if isinstance(value, str):
                return value
        return None

    def identity(self) -> str:
        """Hash of harness model, arguments and weights; keys this expert's result cache."""
        weights = self.weights_reference()
        payload = {
            "model": self.model,
            "model_args": self.model_args,
            "weights": _weights_fingerprint(weights) if weights else None,
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "model_args": self.model_args,
            "modality": self.modality,
            "isolated": self.isolated,
            "identity": self.identity()[:16],
        }
