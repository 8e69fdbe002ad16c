"""``benchcoe evaluate``: a router vs. the baselines on documents it never trained on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.data_args import add_data_arguments, load_data
from benchcoe_plugins.training.dataset import BenchmarkData


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--router", type=Path, required=True, help="router checkpoint folder")
    add_data_arguments(parser)
    parser.add_argument("--split", type=Path, help="split file (default: the checkpoint's split.json)")
    parser.add_argument("--subset", default="test", choices=("test", "validation"),
                        help="which held-out part of the split to evaluate on")
    parser.add_argument("--output", type=Path, help="report folder (default: benchcoe_eval/<router name>)")
    parser.add_argument("--no-plots", action="store_true")


def evaluate_router(router: Any, train: BenchmarkData, test: BenchmarkData, batch_size: int = 2048) -> dict[str, Any]:
    """Routes ``test`` (batched, with a progress bar) and compares with the baselines from ``train``
    (the documents the router's final fit saw: the best single expert is chosen there too)."""
    from tqdm.auto import tqdm

    from benchcoe_plugins.training.metrics import baselines, evaluate_routing

    missing = [e for e in router.experts_ if e not in test.experts]
    if missing:
        raise RecordsError(f"the router routes to experts {missing} that have no results in the evaluation data "
                           f"({test.experts}).")
    test = test.select_experts(router.experts_)
    train = train.select_experts(router.experts_)
    choices: list[str | None] = []
    for start in tqdm(range(0, len(test), batch_size), desc="routing", unit="batch", disable=len(test) <= batch_size):
        choices.extend(router.predict(test.documents[start:start + batch_size]))
    if not len(train):
        raise RecordsError("no training documents in the split: baselines (best single, true-subject table) "
                           "need the training part.")
    base = baselines(train.correct, train.subjects, test.correct, test.subjects, test.experts)
    fallback = base["best_single"]["expert"]
    return evaluate_routing(test.correct, test.subjects, test.experts, choices, base, fallback=fallback)


def run(args: argparse.Namespace) -> int:
    from benchcoe_plugins.routers.base import Router
    from benchcoe_plugins.training.dataset import parts_subset, read_split, split_from_keys
    from benchcoe_plugins.training.reports import write_evaluation

    router = Router.load(args.router)
    data = load_data(args)
    split_path = args.split or args.router / "split.json"
    if not split_path.is_file():
        raise RecordsError(f"no split: {split_path} is missing. Pass --split FILE naming the held-out documents "
                           f"(the router must not have trained on them).")
    indices = split_from_keys(data, read_split(split_path))
    held_out = data.subset(indices[args.subset])
    if not len(held_out):
        raise RecordsError(f"none of the {args.subset} documents of {split_path} are in the given data.")
    fitted_on = [p for p in read_split(split_path).get("fitted_on", ["train"]) if p != args.subset]
    evaluation = evaluate_router(router, parts_subset(data, indices, fitted_on), held_out)
    name = json.loads((args.router / "router.json").read_text()).get("name", args.router.name)
    output = args.output or Path("benchcoe_eval") / name
    files = write_evaluation(output, name, evaluation, plots_too=not args.no_plots)
    print(f"benchcoe evaluate: {name} on {len(held_out)} {args.subset} documents: accuracy {evaluation['accuracy']:.4f} "
          f"(best single {evaluation['baselines']['best_single']['accuracy']:.4f}, "
          f"oracle {evaluation['baselines']['oracle']['accuracy']:.4f})")
    print(f"report: {files['markdown']}")
    return 0
