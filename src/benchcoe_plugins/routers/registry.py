"""Find, validate and load router checkpoint folders by their manifest's ``kind``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import RouterFormatError, brief
from benchcoe_plugins.resources import resource_dir
from benchcoe_plugins.routers.base import FORMAT, FORMAT_VERSION, MANIFEST_NAME, Router
from benchcoe_plugins.routers.cost import is_finite_non_negative

ROUTER_KINDS = {
    "table": "benchcoe_plugins.routers.table:TableRouter",
    "subject": "benchcoe_plugins.routers.subject:SubjectRouter",
    "query": "benchcoe_plugins.routers.query:QueryRouter",
    "cascade": "benchcoe_plugins.routers.cascade:CascadeRouter",
}


def shipped_router_dirs() -> list[Path]:
    try:
        return [resource_dir("router_ckpts")]
    except FileNotFoundError:
        return []


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise RouterFormatError(
            f"{folder} is not a router checkpoint: {MANIFEST_NAME} is missing. "
            f"Point 'router' at a folder written by Router.save() or 'benchcoe train'."
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:
        raise RouterFormatError(f"{path} is corrupt ({error}). Re-create it with 'benchcoe train'.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RouterFormatError(f"{path} is not a {FORMAT} manifest (format={manifest.get('format') if isinstance(manifest, dict) else None!r}).")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RouterFormatError(
            f"{path} has format_version {version!r}; this benchcoe-plugins reads version {FORMAT_VERSION}. "
            f"Re-train the router with this version, or install the version that wrote it."
        )
    if manifest.get("kind") not in ROUTER_KINDS:
        raise RouterFormatError(f"{path}: unknown router kind {manifest.get('kind')!r}; known: {sorted(ROUTER_KINDS)}.")
    experts = manifest.get("experts")
    if not isinstance(experts, list) or not experts or not all(isinstance(e, str) for e in experts):
        raise RouterFormatError(f"{path}: 'experts' must be a non-empty list of expert names.")
    if len(set(experts)) != len(experts):
        raise RouterFormatError(f"{path}: 'experts' names {sorted({e for e in experts if experts.count(e) > 1})} more "
                                f"than once; each expert is one column of the weights. Re-train the router.")
    table = manifest.get("table", {})
    if (not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values())
            or not set(table.values()) <= set(experts)):
        raise RouterFormatError(f"{path}: 'table' must map subjects to experts listed in 'experts'.")
    costs = manifest.get("costs") or {}
    bad = ({name: value for name, value in costs.items() if not is_finite_non_negative(value)}
           if isinstance(costs, dict) else costs)
    if bad:
        raise RouterFormatError(f"{path}: 'costs' {bad!r} must map experts to finite numbers >= 0. Re-train with "
                                f"'benchcoe train --costs FILE', or give each expert 'cost:' in the config.")
    return manifest


def router_class(kind: str) -> type[Router]:
    module_name, _, class_name = ROUTER_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


# One made-up document routed right after loading: a folder whose parts disagree (a vocabulary that no
# longer fits the weights, a setting of the wrong type) fails here, not on the first real document.
PROBE = RoutingDocument("benchcoe_probe", 0, "Which of the following is a probe question?",
                        {"question": "Which of the following is a probe question?", "options": ["this", "that"]})


def probe(router: Router, folder: Path) -> None:
    router.decide([PROBE])
    score = getattr(router, "expected_accuracy", None)
    if callable(score) and not np.isfinite(score([PROBE])).all():
        raise RouterFormatError(f"{folder}: the router's weights give NaN or infinite scores; re-train it.")


def load_router(folder: str | Path) -> Router:
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        router = router_class(manifest["kind"])._from_manifest(folder, manifest)
        probe(router, folder)
        return router
    except RouterFormatError:
        raise
    except Exception as error:
        raise RouterFormatError(f"{folder}: could not load the {manifest['kind']} router ({brief(error)}). "
                                f"The folder may be corrupt; re-create it with 'benchcoe train'.") from error
