"""Router estimators and their checkpoint folder.

A router follows scikit-learn's conventions: plain constructor arguments (``get_params``),
``fit`` returns ``self``, fitted state ends in ``_``, ``predict`` maps documents to expert
names. ``save(folder)`` / ``load(folder)`` (aliases ``save_pretrained`` /
``from_pretrained``) write and read a folder:

    router.json          manifest: format, format_version, kind, params, experts,
                         subjects, table (subject -> expert), fallback_expert,
                         data (what it was trained on), evaluation (held-out report)
    *.safetensors        weights, where the router has any
    other files          e.g. an encoder's tokenizer, written by the router kind itself
"""

from __future__ import annotations

import hashlib
import inspect
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import RouterFormatError

FORMAT = "benchcoe-router"
FORMAT_VERSION = 1
MANIFEST_NAME = "router.json"
STANDARD_KEYS = ("format", "format_version", "kind", "name", "params", "experts", "subjects", "table")


@dataclass(frozen=True)
class RouteDecision:
    """Where one document goes. ``expert`` is None when the router cannot place it."""

    expert: str | None
    score: float | None = None
    subject: str | None = None
    reason: str = ""


def folder_checksum(folder: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON-read ``value`` fits the constructor annotation ``hint`` (other classes pass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, option) for option in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and (not args or all(conforms(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict) and (not args or all(conforms(k, args[0]) and conforms(v, args[1])
                                                           for k, v in value.items()))
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return True


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    """Writes ``tensors`` (numpy arrays) as safetensors. safetensors copies an array's buffer as it lies,
    so a column selection (Fortran-ordered) would be written transposed: each is made C-contiguous."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, str(path))


def load_tensors(folder: Path, filename: str) -> dict[str, Any]:
    """Reads a router's safetensors file (data only, nothing unpickled). A file that cannot be read, or
    an array holding NaN or infinite values (which sparse features may never touch, so scores alone
    would not show them), is a :class:`RouterFormatError`."""
    import numpy as np
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(folder / filename))
    except (OSError, ValueError) as error:
        raise RouterFormatError(f"{folder}: {filename} unreadable ({error}); re-train the router.") from None
    broken = sorted(name for name, value in tensors.items() if value.dtype.kind in "fc" and not np.isfinite(value).all())
    if broken:
        raise RouterFormatError(f"{folder}: {filename} holds NaN or infinite values in {', '.join(broken)}; "
                                f"re-train the router.")
    return tensors


def require_shape(folder: Path, name: str, found: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """A stored array's shape must be what the manifest's subjects and experts give."""
    if tuple(found) != tuple(expected):
        raise RouterFormatError(f"{folder}: {name} has shape {tuple(found)}, but the manifest's subjects and experts "
                                f"give {tuple(expected)}; re-train the router.")


class Router:
    """Base class; subclasses set ``kind`` and implement ``fit``, ``decide`` and the state hooks."""

    kind: ClassVar[str] = ""

    experts_: list[str]
    subjects_: list[str]
    table_: dict[str, str]
    metadata_: dict[str, Any]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments (``deep`` is scikit-learn's; routers hold no nested estimators)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> "Router":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; parameters: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- routing ---------------------------------------------------------------------------
    def decide(self, documents: Sequence[RoutingDocument]) -> list[RouteDecision]:
        raise NotImplementedError

    def predict(self, documents: Sequence[RoutingDocument]) -> list[str | None]:
        return [decision.expert for decision in self.decide(documents)]

    def is_fitted(self) -> bool:
        return hasattr(self, "experts_")

    # -- persistence -----------------------------------------------------------------------
    def _save_state(self, folder: Path) -> dict[str, Any]:
        """Write weights/extra files into ``folder``; return extra manifest fields."""
        return {}

    def _load_state(self, folder: Path, manifest: dict[str, Any]) -> None:
        """Restore fitted state from ``folder`` and ``manifest``."""

    def save(self, folder: str | Path, name: str | None = None) -> Path:
        if not self.is_fitted():
            raise RouterFormatError(f"{type(self).__name__} is not fitted: call fit() before save().")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        extra = self._save_state(folder)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "name": name or folder.name,
            "params": self.get_params(),
            "experts": list(self.experts_),
            "subjects": list(getattr(self, "subjects_", [])),
            "table": dict(getattr(self, "table_", {})),
        }
        from benchcoe_plugins.routers.encoders import embeds_text, encoder_fingerprint

        if embeds_text(self):
            manifest["encoder_sha256"] = encoder_fingerprint(self.encoder)
        for key, value in {**getattr(self, "metadata_", {}), **extra}.items():
            manifest.setdefault(key, value)
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Router":
        from benchcoe_plugins.routers.registry import load_router

        router = load_router(folder)
        if not isinstance(router, cls):
            raise RouterFormatError(f"{folder} holds a {type(router).__name__}, not a {cls.__name__}.")
        return router

    save_pretrained = save
    from_pretrained = load

    @classmethod
    def _from_manifest(cls, folder: Path, manifest: dict[str, Any]) -> "Router":
        params = manifest.get("params", {})
        if not isinstance(params, dict):
            raise RouterFormatError(f"{folder}: 'params' must be a mapping, not {type(params).__name__}.")
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        hints = typing.get_type_hints(cls.__init__)
        for key, value in params.items():
            if key in hints and not conforms(value, hints[key]):
                raise RouterFormatError(f"{folder}: params.{key} is {value!r}, not a {_hint_name(hints[key])}. "
                                        f"Fix {MANIFEST_NAME} or re-train the router.")
        router = cls(**{k: v for k, v in params.items() if k in accepted})
        router.experts_ = list(manifest["experts"])
        router.subjects_ = list(manifest.get("subjects", []))
        router.table_ = dict(manifest.get("table", {}))
        uncovered = [s for s in router.subjects_ if s not in router.table_]
        strangers = sorted({e for e in router.table_.values() if e not in router.experts_})
        if router.table_ and (uncovered or strangers):
            problem = (f"subjects {uncovered[:3]} have no expert in its table" if uncovered
                       else f"its table names experts {strangers} outside its experts {router.experts_}")
            raise RouterFormatError(f"{folder}: {problem}. Fix {MANIFEST_NAME} or re-train the router.")
        router.metadata_ = {k: v for k, v in manifest.items() if k not in STANDARD_KEYS}
        router._load_state(folder, manifest)
        stored = manifest.get("encoder_sha256")
        if stored:
            from benchcoe_plugins.routers.encoders import encoder_fingerprint

            if encoder_fingerprint(router.encoder) != stored:
                raise RouterFormatError(f"{folder}: the encoder {router.encoder!r} is not the one this router was "
                                        f"trained with (its weights differ); give that encoder, or re-train the "
                                        f"router.")
        return router
