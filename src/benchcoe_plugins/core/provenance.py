"""The reproducible record of a CoE run, kept in the results JSON's ``coe.reproducibility``:
package versions, the command, the router (manifest, checksum, a copy beside the outputs)
and, per expert, the resolved weights revision and a hash of its chat template."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchcoe_plugins.core.config import CoEConfig
from benchcoe_plugins.experts.spec import ADAPTER_KEYS, ExpertSpec, looks_like_local_path
from benchcoe_plugins.experts.weights_identity import hub_commit, local_weights_hash
from benchcoe_plugins.routers.registry import read_manifest

PACKAGES = {"benchcoe": "benchcoe-plugins", "lm_eval": "lm_eval", "lmms_eval": "lmms_eval",
            "transformers": "transformers", "torch": "torch", "vllm": "vllm"}
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
ROUTER_COPY_PREFIX = "router_"


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for label, distribution in PACKAGES.items():
        try:
            versions[label] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[label] = None
    return versions


def _hub_snapshot(repo_id: str, commit: str | None) -> Path | None:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / str(commit)
    return folder if commit and folder.is_dir() else None


def chat_template_hash(folder: Path | None) -> str | None:
    """sha256 of the chat template a model folder ships (tokenizer_config.json or its own file)."""
    if folder is None:
        return None
    if folder.is_file():
        folder = folder.parent
    texts = [(folder / name).read_text() for name in CHAT_TEMPLATE_FILES if (folder / name).is_file()]
    config = folder / "tokenizer_config.json"
    if not texts and config.is_file():
        try:
            template = json.loads(config.read_text()).get("chat_template")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            template = None
        if template:
            texts.append(json.dumps(template, sort_keys=True) if not isinstance(template, str) else template)
    return hashlib.sha256(texts[0].encode()).hexdigest() if texts else None


def expert_revision(spec: ExpertSpec) -> dict[str, Any]:
    adapters = {key: value for key, value in spec.weight_arguments().items() if key in ADAPTER_KEYS}
    revision = _main_weights_revision(spec)
    tokenizer = spec.tokenizer_reference()
    if tokenizer is not None:  # the chat template is the tokenizer's, not the weights folder's
        local = Path(tokenizer).expanduser()
        revision["tokenizer"] = "sha256:" + local_weights_hash(local) if local.exists() else tokenizer
        revision["chat_template_sha256"] = chat_template_hash(local.resolve()) if local.exists() else None
    if adapters:
        local = {key: Path(value).expanduser() for key, value in adapters.items()}
        revision["adapters"] = {key: "sha256:" + local_weights_hash(local[key]) if local[key].exists() else value
                                for key, value in sorted(adapters.items())}
    return revision


def _main_weights_revision(spec: ExpertSpec) -> dict[str, Any]:
    weights = spec.weights_reference()
    if weights is None:
        return {"weights": None, "revision": None, "chat_template_sha256": None}
    local = Path(weights).expanduser()
    if local.exists():
        return {"weights": str(local.resolve()), "revision": "sha256:" + local_weights_hash(local),
                "chat_template_sha256": chat_template_hash(local.resolve())}
    if looks_like_local_path(weights):
        return {"weights": weights, "revision": None, "chat_template_sha256": None}
    pinned = spec.model_args.get("revision")
    commit = hub_commit(weights, pinned if isinstance(pinned, str) else None)
    return {"weights": weights, "revision": commit,
            "chat_template_sha256": chat_template_hash(_hub_snapshot(weights, commit))}


def copy_router(router: Path, checksum: str, folder: Path) -> Path:
    """The router folder copied into ``folder`` as ``router_<checksum>`` (once per checksum)."""
    target = folder / f"{ROUTER_COPY_PREFIX}{checksum[:16]}"
    if not target.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(router, target)
    return target


def reproducibility_record(config: CoEConfig, router_checksum: str, harness: str,
                           outputs: Path | None) -> dict[str, Any]:
    """What ``benchcoe rerun`` needs, copying the router into ``outputs`` when given."""
    copy = copy_router(config.router, router_checksum, outputs) if outputs is not None else None
    return {
        "harness": harness,
        "command": list(sys.argv),
        "cwd": os.getcwd(),
        "versions": package_versions(),
        "router": {"manifest": read_manifest(config.router), "sha256": router_checksum,
                   "copy": copy.name if copy else None},
        "experts": {name: expert_revision(spec) for name, spec in config.experts.items()},
    }
