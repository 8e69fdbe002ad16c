"""``benchcoe inspect ROUTER``: what a router routes to, what it was trained on, how it scored.

    benchcoe inspect mmlu_pro_subject          # a shipped name, a folder, or a hub id org/name[@rev]
    benchcoe inspect org/router --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("router", help="router folder, shipped router name, or hub id org/name[@revision]")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")


def describe_router(value: str) -> dict[str, Any]:
    from benchcoe_plugins.core.config import resolve_router_path
    from benchcoe_plugins.routers.base import folder_checksum
    from benchcoe_plugins.routers.registry import read_manifest

    folder = resolve_router_path(value, Path.cwd())
    manifest = read_manifest(folder)
    evaluation = manifest.get("evaluation") if isinstance(manifest.get("evaluation"), dict) else {}
    return {
        "router": value,
        "path": str(folder),
        "name": manifest.get("name", folder.name),
        "kind": manifest["kind"],
        "experts": manifest["experts"],
        "subjects": manifest.get("subjects", []),
        "table": manifest.get("table", {}),
        "params": manifest.get("params", {}),
        "data": manifest.get("data", {}),
        "evaluation": {key: evaluation[key] for key in ("documents", "accuracy", "baselines") if key in evaluation},
        "sha256": folder_checksum(folder),
    }


def run(args: argparse.Namespace) -> int:
    info = describe_router(args.router)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"router   {info['name']} (kind {info['kind']})")
    print(f"path     {info['path']}")
    print(f"sha256   {info['sha256']}")
    print(f"experts  {', '.join(info['experts'])}")
    if info["subjects"]:
        print(f"subjects {len(info['subjects'])}: {', '.join(info['subjects'])}")
    data = info["data"]
    if data:
        print(f"trained  on {data.get('documents', '?')} documents from {data.get('source', '?')}")
    evaluation = info["evaluation"]
    if evaluation:
        line = f"held-out {evaluation.get('documents', '?')} documents: accuracy {evaluation.get('accuracy')}"
        best = (evaluation.get("baselines") or {}).get("best_single")
        if best:
            line += f" (best single expert {best.get('expert')}: {best.get('accuracy')})"
        print(line)
    print("use it with your own experts: router_expert: {" + ", ".join(f"{e}: <your expert>" for e in info["experts"]) + "}")
    return 0
