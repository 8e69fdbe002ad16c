"""What an expert is: a harness model name plus its arguments, and a stable identity."""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchcoe_plugins.experts.weights_identity import local_weights_identity, weights_identity

# model_args keys whose value names the expert's weights (a hub id or a local folder).
WEIGHT_KEYS = ("pretrained", "model", "path", "model_path", "model_name_or_path", "log", "records")
# model_args keys naming weights applied on top of them (lm-eval hf: peft, delta; vllm: lora_local_path).
ADAPTER_KEYS = ("peft", "delta", "lora_local_path")
REPLAY_SOURCE_KEYS = ("log", "records")  # what a replay expert answers from
MODALITIES = ("text", "vision")


def looks_like_local_path(value: str) -> bool:
    """A hub id is ``org/name``; a value starting like a path is meant to be local."""
    return value.startswith(("/", "./", "../", "~")) or value.count("/") > 1


# Libraries whose version can change an answer: the harnesses and the backends they run.
ANSWER_LIBRARIES = ("lm_eval", "lmms_eval", "transformers", "torch", "vllm", "tokenizers", "accelerate")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ANSWER_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def matching_paths(item: str) -> list[str]:
    """``item`` itself where it names an existing file or folder (its name may hold ``[``, ``*``), else
    what it matches as a glob pattern."""
    path = Path(item).expanduser()
    return [str(path)] if path.exists() else sorted(glob.glob(str(path)))


@dataclass(frozen=True)
class ExpertSpec:
    """One expert of the pool as the config file names it."""

    name: str
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    modality: str = "text"
    handles_text_only: bool = True
    isolated: bool = False

    def _main_weights(self) -> tuple[str, str] | None:
        """(model_args key, value) naming the expert's main weights: the first of ``WEIGHT_KEYS`` given."""
        for key in WEIGHT_KEYS:
            value = self.model_args.get(key)
            if isinstance(value, str):
                return key, value
        return None

    def weights_reference(self) -> str | None:
        main = self._main_weights()
        return main[1] if main else None

    def weight_arguments(self) -> dict[str, str]:
        """The model_args that name weights: the main weights (``weights_reference``) and any adapters."""
        found = {key: self.model_args[key] for key in ADAPTER_KEYS if isinstance(self.model_args.get(key), str)}
        main = self._main_weights()
        if main:
            found[main[0]] = main[1]
        return found

    def tokenizer_reference(self) -> str | None:
        """A ``tokenizer`` given apart from the weights (a folder or hub id), else None."""
        tokenizer = self.model_args.get("tokenizer")
        return tokenizer if isinstance(tokenizer, str) and tokenizer != self.weights_reference() else None

    def identity(self) -> str:
        """Hash of harness model, arguments, weights content (adapters too) and library versions; keys the
        result cache."""
        payload = {
            "model": self.model,
            "model_args": self.model_args,
            "weights": {key: weights_identity(value, self.model_args)
                        for key, value in sorted(self.weight_arguments().items())} or None,
            "libraries": library_versions(),
        }
        tokenizer = self.tokenizer_reference()
        if tokenizer is not None:  # its own folder: its chat template shapes every prompt
            payload["tokenizer"] = weights_identity(tokenizer, self.model_args)
        recorded = self._recorded_files()
        if recorded:
            payload["recorded_files"] = recorded
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def _recorded_files(self) -> list[str]:
        """Content identity of every file a replay expert's ``log``/``records`` names (a path, a folder, a
        glob or a list of them), so editing one file behind a glob changes the identity too."""
        names = [self.model_args.get(key) for key in REPLAY_SOURCE_KEYS]
        items = [v for value in names for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
        return [local_weights_identity(match) for item in items for match in matching_paths(item)]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "model_args": self.model_args,
            "modality": self.modality,
            "isolated": self.isolated,
            "identity": self.identity()[:16],
        }
