"""``benchcoe demo``: the embedded default, real CoE evaluations of MMLU-Pro and MMMU-Pro with no GPU.

1. Seeds a datasets cache of its own (``<output>/hf_datasets``) with the shipped offline MMLU-Pro, as
   ``benchcoe offline-data --cache-dir`` does; the user's cache is neither changed nor read.
2. Runs the UNCHANGED ``lm_eval --model coe --model_args config=<embedded config> --tasks
   mmlu_pro --output_path ... --log_samples`` once per shipped router (subject-level, then
   query-level). The five experts are replay experts: each answers from its recorded output.
3. Prints the harness's own table, then a comparison: each expert alone, the CoE with each
   router, and the oracle, on all documents and on the router's held-out split.
4. The same for the multimodal half (``demo_mmmu_pro``): the UNCHANGED ``python -m lmms_eval
   --model coemodel --tasks mmmu_pro_standard`` with replay experts of five VLMs, once per
   shipped MMMU-Pro router.

The CoE rows are the accuracies the harness reported; the demo recomputes each from the
records and the routing log on the same documents and says whether they agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from benchcoe_plugins.core.errors import BenchCoEError
from benchcoe_plugins.core.jsonl import read_jsonl

POOL = ["Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct", "mathstral-7B", "gemma-7b", "Qwen1.5-7B-Chat"]
FALLBACK = POOL[0]
LEVELS = {"subject": "mmlu_pro_subject", "query": "mmlu_pro_query"}
METRIC = "exact_match,custom-extract"
PARTS = ("mmlu_pro", "mmmu_pro")
DATASETS_CACHE = "hf_datasets"  # under --output: the demo never changes, or reads, the user's datasets cache
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


class DemoError(BenchCoEError, RuntimeError):
    """The demo's harness run failed or its output is not what the harness normally writes."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=Path("benchcoe_demo"), help="output folder (default ./benchcoe_demo)")
    parser.add_argument("--routers", default="subject,query,cascade",
                        help="router levels to run through the harness, comma-separated (default "
                             "subject,query,cascade; cascade: MMMU-Pro only, the embedded MMLU-Pro pool has no 70B)")
    parser.add_argument("--limit", type=int, default=None,
                        help="passed to the harnesses' --limit: MMLU-Pro documents per subject, MMMU-Pro documents")
    parser.add_argument("--router-dir", type=Path, default=None,
                        help="folder holding mmlu_pro_subject/, mmlu_pro_query/, mmmu_pro_subject/, mmmu_pro_query/ "
                             "and mmmu_pro_cascade/ (default: the shipped router_ckpts)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, default {','.join(PARTS)}: mmlu_pro runs lm_eval --model coe, "
                             f"mmmu_pro runs python -m lmms_eval --model coemodel")
    parser.add_argument("--no-log-samples", action="store_true", help="do not pass --log_samples to the harnesses")


# -- data ----------------------------------------------------------------------------------------
def replay_dir() -> Path:
    from benchcoe_plugins.resources import resource_dir

    return resource_dir("tasks") / "mmlu_pro" / "replay"


@dataclass
class DemoData:
    """The test split as the harness enumerates it, and every expert's correctness per question."""

    docs: dict[tuple[str, int], int]  # (task, doc_id) -> question_id
    subjects: dict[int, str]
    correct: dict[str, dict[int, bool]]  # expert -> question_id -> correct
    held_out_fewshot: int = 0

    def accuracy(self, choice: dict[int, str], ids: Sequence[int]) -> float:
        return sum(self.correct[choice[q]][q] for q in ids) / max(len(ids), 1)


def load_data(limit: int | None) -> DemoData:
    import pyarrow.parquet as pq

    from benchcoe_plugins.offline.seed import shipped_mmlu_pro
    from benchcoe_plugins.training.records import mmlu_pro_task

    folder = shipped_mmlu_pro()
    table = pq.read_table(folder / "test.parquet", columns=["question_id", "category"]).to_pydict()
    docs: dict[tuple[str, int], int] = {}
    per_task: dict[str, int] = {}
    for question_id, category in zip(table["question_id"], table["category"]):
        task = mmlu_pro_task(category)
        doc_id = per_task.get(task, 0)
        per_task[task] = doc_id + 1
        if limit is None or doc_id < limit:
            docs[(task, doc_id)] = question_id
    correct: dict[str, dict[int, bool]] = {}
    for expert in POOL:
        correct[expert] = {row["question_id"]: bool(row["correct"])
                           for row in read_jsonl(replay_dir() / f"{expert}.jsonl.gz")}
    manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").is_file() else {}
    return DemoData(docs, dict(zip(table["question_id"], table["category"])), correct,
                    len(manifest.get("held_out_question_ids", [])))


# -- routers -------------------------------------------------------------------------------------
@dataclass
class RouterChoice:
    level: str
    folder: Path
    stand_in: bool
    held_out: set[int] | None = field(default=None)
    split_note: str = ""


def _ids(values: Any, key: Callable[[str], Any] = int) -> set[Any]:
    """``[12, "mmlu_pro/13", "mmlu_pro_law/14"]`` -> {12, 13, 14} (the question's key is the last part)."""
    return {key(str(v).rsplit("/", 1)[-1]) for v in values}


def held_out_ids(folder: Path, manifest: dict[str, Any], question_ids: Iterable[Any],
                 key: Callable[[str], Any] = int) -> tuple[set[Any] | None, str]:
    """The question_ids the router never trained on: the ``test`` part of the ``split.json`` that
    ``benchcoe train`` writes beside the manifest, or the stand-in's ``question_id % m`` rule."""
    split_file = folder / "split.json"
    test = json.loads(split_file.read_text()).get("test") if split_file.is_file() else None
    if test:
        return _ids(test, key), f"'test' of {folder.name}/split.json ({len(test)} questions)"
    rule = ((manifest.get("data") or {}).get("split") or {}).get("held_out_rule")
    if isinstance(rule, dict) and "modulus" in rule:
        modulus, remainders = int(rule["modulus"]), {int(r) for r in rule.get("remainders", [0])}
        return ({q for q in question_ids if q % modulus in remainders},
                f"question_id % {modulus} in {sorted(remainders)} ({folder.name}/router.json)")
    return None, f"{folder.name} has no split.json and its router.json names no held-out rule"


def dev_table_router(output: Path, data: DemoData) -> Path:
    """Stand-in while no trained router is shipped: a TableRouter (doc category -> best expert),
    fitted on question_id % 5 != 0 and held out on question_id % 5 == 0."""
    from benchcoe_plugins.core.documents import RoutingDocument
    from benchcoe_plugins.routers.table import TableRouter
    import numpy as np

    folder = output / "dev_router_table"
    train = [q for q in data.subjects if q % 5 != 0]
    documents = [RoutingDocument("mmlu_pro", q, "", {"category": data.subjects[q]}) for q in train]
    correct = np.array([[data.correct[e].get(q, False) for e in POOL] for q in train], dtype=float)
    router = TableRouter().fit(documents, correct, POOL)
    router.metadata_["data"] = {"source": "tasks/mmlu_pro/replay records", "split": {
        "key": "question_id", "held_out_rule": {"modulus": 5, "remainders": [0]}}}
    return router.save(folder, name="dev_table_stand_in")


def choose_routers(levels: Sequence[str], router_dir: Path | None, output: Path, data: DemoData) -> list[RouterChoice]:
    from benchcoe_plugins.routers.registry import read_manifest, shipped_router_dirs

    search = [router_dir] if router_dir else shipped_router_dirs()
    choices = []
    stand_in: Path | None = None
    for level in levels:
        if level not in LEVELS:
            raise DemoError(f"--routers: unknown level {level!r}; choose from {sorted(LEVELS)}.")
        folder = next((d / LEVELS[level] for d in search if (d / LEVELS[level] / "router.json").is_file()), None)
        if folder is None and router_dir is not None:
            raise DemoError(f"no {LEVELS[level]} router in {router_dir}; train one with 'benchcoe train', or leave "
                            f"out --router-dir to use the shipped routers.")
        if folder is None:
            stand_in = stand_in or dev_table_router(output, data)
            folder = stand_in
        manifest = read_manifest(folder)
        missing = sorted(set(manifest["experts"]) - set(POOL))
        if missing:
            raise DemoError(f"router {folder} routes to {missing}, which are not in the embedded pool {POOL}.")
        ids, note = held_out_ids(folder, manifest, data.subjects)
        choices.append(RouterChoice(level, folder, folder == stand_in, ids, note))
    return choices


# -- the harness run -----------------------------------------------------------------------------
def write_config(choice: RouterChoice, output: Path) -> Path:
    from benchcoe_plugins.routers.registry import shipped_router_dirs

    shipped = replay_dir() / f"coe_{choice.level}.yaml"
    shipped_routers = {d.resolve() / LEVELS[choice.level] for d in shipped_router_dirs()}
    if not choice.stand_in and choice.folder.resolve() in shipped_routers and shipped.is_file():
        return shipped  # the embedded config, unchanged
    import yaml

    config = {
        "name": f"mmlu-pro-replay-{choice.level}" + ("-dev" if choice.stand_in else ""),
        "router": str(choice.folder),
        "fallback": FALLBACK,
        "result_cache": False,
        "question_field": {"mmlu_pro*": "question"},
        "experts": {e: {"model": "coe_replay", "model_args": {"records": str(replay_dir() / f"{e}.jsonl.gz"),
                                                                "key": "question_id"}} for e in POOL},
    }
    path = output / f"coe_{choice.level}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def lm_eval_command(config: Path, out: Path, routing_log: Path, limit: int | None, log_samples: bool) -> list[str]:
    executable = Path(sys.executable).parent / "lm_eval"
    command = [str(executable) if executable.exists() else "lm_eval", "--model", "coe", "--model_args",
               f"config={config},routing_log={routing_log}", "--tasks", "mmlu_pro", "--output_path", str(out)]
    if log_samples:
        command.append("--log_samples")
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


def run_harness(command: list[str], cwd: Path) -> str:
    """Runs a harness CLI in ``cwd`` (the demo's output folder), offline, on the datasets seeded there."""
    env = {**os.environ, **OFFLINE_ENV, "HF_DATASETS_CACHE": str(cwd / DATASETS_CACHE)}
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        harness = command[2] if command[1:2] == ["-m"] else Path(command[0]).name
        raise DemoError(f"{harness} exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def harness_accuracy(out: Path) -> tuple[float, int]:
    paths = sorted(out.rglob("results_*.json"))
    if not paths:
        raise DemoError(f"lm_eval wrote no results_*.json under {out}.")
    entry = json.loads(paths[-1].read_text())["results"]["mmlu_pro"]
    return float(entry[METRIC]), int(entry.get("sample_len") or entry.get("sample_count", {}).get(METRIC, 0))


def read_routing(routing_log: Path, data: DemoData) -> dict[int, str]:
    return {data.docs[(row["task"], int(row["doc_id"]))]: row["expert"] for row in read_jsonl(routing_log)}


# -- the comparison ------------------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"


def comparison(data: DemoData, runs: list[dict[str, Any]], pool: Sequence[str] = POOL) -> str:
    ids = sorted(data.docs.values())
    held = runs[0]["choice"].held_out if runs else None
    held_ids = [q for q in ids if held is not None and q in held]
    header = f"{'':44s} {'all docs':>9s} {'held-out*':>9s}"
    lines = [header, f"{'':44s} {len(ids):>9d} {len(held_ids) if held is not None else '-':>9}"]
    for expert in pool:
        single = {q: expert for q in ids}
        lines.append(f"{'expert ' + expert:44s} {percent(data.accuracy(single, ids)):>9s} "
                     f"{percent(data.accuracy(single, held_ids) if held_ids else None):>9s}")
    for run in runs:
        label = f"CoE {run['choice'].level}-level ({run['choice'].folder.name})"
        routed = run["routing"]
        run_held = [q for q in ids if run["choice"].held_out is not None and q in run["choice"].held_out]
        lines.append(f"{label[:44]:44s} {percent(run['harness_accuracy']):>9s} "
                     f"{percent(data.accuracy(routed, run_held) if run_held else None):>9s}")
    oracle = {q: next((e for e in pool if data.correct[e][q]), pool[0]) for q in ids}
    lines.append(f"{'oracle (any expert correct)':44s} {percent(data.accuracy(oracle, ids)):>9s} "
                 f"{percent(data.accuracy(oracle, held_ids) if held_ids else None):>9s}")
    lines.append("* held-out: documents in the router's test split, which it never trained on "
                 "(all docs includes its training documents)")
    others = [r["choice"].level for r in runs[1:] if r["choice"].held_out != held]
    if others:
        lines.append(f"(held-out column: the split of the {runs[0]['choice'].level}-level router; the "
                     f"{', '.join(others)}-level router's own held-out split is used on its row)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.limit is not None and args.limit < 1:
        raise DemoError(f"--limit {args.limit}: give a whole number >= 1 (MMLU-Pro documents per subject, MMMU-Pro "
                        f"documents), or drop --limit to run every document.")
    output = args.output.resolve()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DemoError(f"--output: cannot create {output} ({error.strerror}); name a folder you can write.") from None
    if args.router_dir is not None:
        args.router_dir = args.router_dir.resolve()  # the configs the demo writes live in another folder
        if not args.router_dir.is_dir():
            raise DemoError(f"--router-dir {args.router_dir} is not a folder; give one holding router folders "
                            f"(e.g. one 'benchcoe train --output DIR/NAME' wrote), or leave it out for the shipped ones.")
    from benchcoe_plugins.demo_mmmu_pro import LEVELS as MMMU_PRO_LEVELS

    levels = [level.strip() for level in args.routers.split(",") if level.strip()]
    known = list(dict.fromkeys([*LEVELS, *MMMU_PRO_LEVELS]))
    if not levels or set(levels) - set(known):
        raise DemoError(f"--routers: {args.routers!r} is not a list of {','.join(known)}.")
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise DemoError(f"--parts: {unknown or parts} is not a list of {list(PARTS)}; e.g. --parts {','.join(PARTS)}.")
    mmlu_pro_levels = [level for level in levels if level in LEVELS]
    if "mmlu_pro" in parts and not mmlu_pro_levels:
        raise DemoError(f"--routers {args.routers}: the MMLU-Pro part runs {' / '.join(LEVELS)} (its embedded pool has "
                        f"no 70B for a cascade); add one, or give --parts mmmu_pro.")
    summary: dict[str, Any] = {}
    if "mmlu_pro" in parts:
        summary.update(run_mmlu_pro(args, mmlu_pro_levels, output))
    if "mmmu_pro" in parts:
        from benchcoe_plugins.demo_mmmu_pro import run_mmmu_pro

        if "mmlu_pro" in parts:
            print()
        summary["mmmu_pro_runs"] = run_mmmu_pro(levels, args.router_dir, output, args.limit, not args.no_log_samples)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwall time {summary['wall_seconds']} s; outputs in {output}")
    equal = [abs(r["harness_accuracy"] - r["records_accuracy"]) < 1e-12 for r in summary.get("runs", [])]
    return 0 if all(equal + [r["equal"] for r in summary.get("mmmu_pro_runs", [])]) else 1


def run_mmlu_pro(args: argparse.Namespace, levels: Sequence[str], output: Path) -> dict[str, Any]:
    """The lm-eval half: MMLU-Pro through ``lm_eval --model coe``; prints it, returns its summary."""
    from benchcoe_plugins.offline.seed import is_seeded, seed_mmlu_pro_cache

    if not is_seeded(output / DATASETS_CACHE):
        print(f"seeded the offline MMLU-Pro into {seed_mmlu_pro_cache(output / DATASETS_CACHE)}", flush=True)
    data = load_data(args.limit)
    runs = []
    for choice in choose_routers(levels, args.router_dir, output, data):
        config = write_config(choice, output)
        out = output / choice.level
        routing_log = out / "routing.jsonl"
        stdout = run_harness(lm_eval_command(config, out, routing_log, args.limit, not args.no_log_samples), output)
        print(stdout, flush=True)
        accuracy, count = harness_accuracy(out)
        routing = read_routing(routing_log, data)
        if sorted(routing) != sorted(data.docs.values()):
            raise DemoError(f"the routing log {routing_log} covers {len(routing)} documents, the run {len(data.docs)}.")
        from_records = data.accuracy(routing, sorted(routing))
        runs.append({"choice": choice, "harness_accuracy": accuracy, "records_accuracy": from_records,
                     "routing": routing, "count": count, "config": str(config)})

    print(f"MMLU-Pro test: {len(data.docs)} documents evaluated "
          f"({data.held_out_fewshot} test questions held out as the 5-shot examples"
          f"{'' if args.limit is None else f'; --limit {args.limit} per subject'}).")
    print("Accuracy (%) of exact_match, custom-extract; the experts replay their recorded extracted answers.\n")
    print(comparison(data, runs))
    print()
    for run_info in runs:
        choice = run_info["choice"]
        agree = abs(run_info["harness_accuracy"] - run_info["records_accuracy"]) < 1e-12
        print(f"{choice.level}-level: harness {100 * run_info['harness_accuracy']:.4f} %, recomputed from the records "
              f"and the routing log {100 * run_info['records_accuracy']:.4f} % -> {'equal' if agree else 'DIFFERENT'}")
        print(f"  router {choice.folder}{'  [development stand-in: table router on the doc category]' if choice.stand_in else ''}")
        print(f"  held-out split: {choice.split_note}")
    return {"documents": len(data.docs), "held_out_fewshot": data.held_out_fewshot,
            "runs": [{"level": r["choice"].level, "router": str(r["choice"].folder), "stand_in": r["choice"].stand_in,
                      "config": r["config"], "harness_accuracy": r["harness_accuracy"],
                      "records_accuracy": r["records_accuracy"]} for r in runs]}
