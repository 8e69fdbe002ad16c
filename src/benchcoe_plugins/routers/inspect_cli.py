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


def split_summary(folder: Path) -> dict[str, Any]:
    """Documents per part of ``split.json`` (train / validation / test), and its seed."""
    path = folder / "split.json"
    if not path.is_file():
        return {}
    try:
        split = json.loads(path.read_text())
    except (ValueError, RecursionError):
        return {"error": f"{path.name} is corrupt"}
    if not isinstance(split, dict):
        return {"error": f"{path.name} is not a mapping"}
    return {key: len(value) if key != "fitted_on" and isinstance(value, list) else value for key, value in split.items()}


def describe_router(value: str) -> dict[str, Any]:
    from benchcoe_plugins.core.config import resolve_router_path
    from benchcoe_plugins.routers.base import folder_checksum
    from benchcoe_plugins.routers.guard import guard_evidence
    from benchcoe_plugins.routers.registry import load_router, read_manifest

    folder = resolve_router_path(value, Path.cwd())
    manifest = read_manifest(folder)
    router = load_router(folder)  # what is described must also load: a broken router is an error here, not at run time
    evaluation, tuning, data = (manifest.get(key) if isinstance(manifest.get(key), dict) else {}
                                for key in ("evaluation", "tuning", "data"))
    return {
        "router": value,
        "path": str(folder),
        "name": manifest.get("name", folder.name),
        "kind": manifest["kind"],
        "experts": manifest["experts"],
        "subjects": manifest.get("subjects", []),
        "table": manifest.get("table", {}),
        "params": manifest.get("params", {}),
        "data": data,
        "split": split_summary(folder),
        "guard": guard_evidence(manifest),
        "tuning": {key: tuning[key] for key in ("blend", "margin", "mode", "calibration") if key in tuning},
        "evaluation": {key: evaluation[key] for key in ("documents", "accuracy", "baselines") if key in evaluation},
        "sha256": folder_checksum(folder),
        **({"cascade": cascade_summary(router)} if router.kind == "cascade" else {}),
    }


def cascade_summary(router: Any) -> dict[str, Any]:
    """What a loaded cascade reads of its first expert's answer, and whether its guard let it escalate."""
    return {"first": router.first, "second": router.second, "answer_pattern": router.answer_pattern,
            "answer_features": list(router.answer_features_), "mode": router.mode_, "pool": list(router.pool_)}


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
    for subject, expert in info["table"].items():
        print(f"  {subject:<20} -> {expert}")
    data = info["data"]
    if data:
        print(f"trained  on {data.get('documents', '?')} documents from {data.get('source', '?')}")
        tasks = data.get("tasks")
        if isinstance(tasks, list) and tasks:  # a task outside these is routed with a warning at run time
            print(f"tasks    {len(tasks)}: {', '.join(map(str, tasks[:6]))}{', ...' if len(tasks) > 6 else ''}")
    split = {k: v for k, v in info["split"].items() if k in ("train", "validation", "test", "seed")}
    if split:
        print("split    " + ", ".join(f"{k} {v}" for k, v in split.items()))
    params = info["params"]
    if info["kind"] == "query":
        settings = "".join(f", {k} {info['tuning'][k]}" for k in ("blend", "margin") if k in info["tuning"])
        head = params.get("head", "independent")
        if head == "knn":
            head = f"knn ({params.get('neighbours')} nearest, {params.get('encoder')})"
        prior = f", prior by {params['prior_field']}" if params.get("prior_field") else ""
        print(f"query    head {head}{prior}, low margin -> {params.get('defer_to', 'subject')}"
              + settings)
        if "calibration" in info["tuning"]:
            print(f"budgets  calibrated on {info['tuning']['calibration']}")
    if "cascade" in info:
        cascade = info["cascade"]
        letters = [f for f in cascade["answer_features"] if f.startswith("answer_letter_")]
        shape = [f for f in cascade["answer_features"] if f not in letters]
        print(f"cascade  {cascade['first']} answers, then {cascade['second']} where it escalates"
              + ("" if cascade["mode"] == "cascade" else " (the guard chose one expert alone: no escalation)"))
        if cascade["pool"] != [cascade["first"], cascade["second"]]:
            print(f"pair     chosen by cross-validation among {', '.join(cascade['pool'])}")
        print(f"reads    {cascade['first']}'s answer via '{cascade['answer_pattern']}': {', '.join(shape)}"
              + (f", the option letter it chose ({letters[0][-1]}-{letters[-1][-1]})" if letters else ""))
    guard = info["guard"]
    if guard.get("skipped"):
        print(f"guard    skipped: {guard['skipped']}; routes by {guard.get('mode', 'its own choice')}")
    elif guard:
        print(f"guard    {guard.get('method', '?')}: {'routes' if guard.get('routes') else 'falls back to the best single expert'}"
              f" (gain over best single {guard.get('gain_over_best_single')} ± {guard.get('gain_standard_error')})")
    evaluation = info["evaluation"]
    if evaluation:
        line = f"held-out {evaluation.get('documents', '?')} documents: accuracy {evaluation.get('accuracy')}"
        best = (evaluation.get("baselines") or {}).get("best_single")
        if best:
            line += f" (best single expert {best.get('expert')}: {best.get('accuracy')})"
        print(line)
    print("own experts: give each 'router_expert: NAME' with NAME one of " + ", ".join(info["experts"]))
    return 0
