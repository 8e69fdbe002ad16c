"""The lmms-eval half of ``benchcoe demo``: MMMU-Pro through the unchanged ``coemodel``.

Runs ``python -m lmms_eval --model coemodel --model_args config=<embedded config> --tasks
mmmu_pro_standard`` once per shipped MMMU-Pro router, with replay experts of five real VLMs
(their recorded answers on the 1,730 questions), and compares each expert alone, the CoE and
the oracle on all documents and on the router's held-out split. The cascade's config names its two
experts only.

Exactness: each replay expert answers "The answer is (X)." with its recorded letter X, which
lmms-eval's MMMU parser resolves to X; a record with no parsable answer (``pred`` null, which
the records score wrong) replays the first option letter that is not the gold one
(``no_answer: wrong_letter``). So the parser's random fallback never fires, and the harness's
``mmmu_acc`` (rounded by lmms-eval to 5 decimals) equals the accuracy recomputed from the
records and the routing log. The cascade's first expert replays its raw output instead (a bare
letter, which the parser reads as that letter, or nothing): the router read that text when it was
trained. An empty output that the cascade kept would be parsed at random; the check below would
then say DIFFERENT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.demo import (DATASETS_CACHE, DemoData, DemoError, RouterChoice, comparison, held_out_ids,
                                   read_routing, run_harness)
from benchcoe_plugins.offline.mmmu_pro import TASK, VLM_POOL, shipped_mmmu_pro

LEVELS = {"subject": "mmmu_pro_subject", "query": "mmmu_pro_query", "cascade": "mmmu_pro_cascade"}
METRIC = "mmmu_acc,none"
DECIMALS = 5  # lmms-eval rounds mmmu_acc to 5 decimals


def load_data(limit: int | None) -> DemoData:
    """The task's documents in the harness's order (doc_id = row of the shipped copy) and each
    expert's recorded correctness per MMMU id."""
    import pyarrow.parquet as pq

    folder = shipped_mmmu_pro()
    table = pq.read_table(folder / "test.parquet", columns=["id", "subject"]).to_pydict()
    rows = list(zip(table["id"], table["subject"]))[:limit]
    correct = {expert: {row["id"]: bool(row["correct"]) for row in read_jsonl(folder / "replay" / f"{expert}.jsonl.gz")}
               for expert in VLM_POOL}
    return DemoData({(TASK, i): key for i, (key, _) in enumerate(rows)}, dict(rows), correct)


def choose_routers(levels: Sequence[str], router_dir: Path | None, data: DemoData) -> list[RouterChoice]:
    from benchcoe_plugins.routers.registry import read_manifest, shipped_router_dirs

    search = [router_dir] if router_dir else shipped_router_dirs()
    choices = []
    for level in levels:
        if level not in LEVELS:
            raise DemoError(f"--routers: unknown level {level!r}; choose from {sorted(LEVELS)}.")
        folder = next((d / LEVELS[level] for d in search if (d / LEVELS[level] / "router.json").is_file()), None)
        if folder is None:
            raise DemoError(f"no {LEVELS[level]} router in {[str(d) for d in search]}; train one with "
                            f"'benchcoe train --records <mmmu_pro records>' or pass --router-dir.")
        manifest = read_manifest(folder)
        missing = sorted(set(manifest["experts"]) - set(VLM_POOL))
        if missing:
            raise DemoError(f"router {folder} routes to {missing}, which are not in the embedded VLM pool {VLM_POOL}.")
        ids, note = held_out_ids(folder, manifest, data.subjects, key=str)
        choices.append(RouterChoice(level, folder, False, ids, note))
    return choices


def write_config(choice: RouterChoice, output: Path) -> Path:
    """The shipped config when the router is the shipped one, else a copy naming ``choice.folder``."""
    import yaml

    from benchcoe_plugins.routers.registry import shipped_router_dirs

    shipped = shipped_mmmu_pro() / "replay" / f"coe_{choice.level}.yaml"
    if choice.folder.resolve() in {d.resolve() / LEVELS[choice.level] for d in shipped_router_dirs()}:
        return shipped  # the embedded config, unchanged
    config = yaml.safe_load(shipped.read_text())
    config["router"] = str(choice.folder)
    for spec in config["experts"].values():
        spec["model_args"]["records"] = str(shipped.parent / spec["model_args"]["records"])
    path = output / f"coe_mmmu_pro_{choice.level}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def lmms_eval_command(config: Path, out: Path, routing_log: Path, limit: int | None, log_samples: bool) -> list[str]:
    command = [sys.executable, "-m", "lmms_eval", "--model", "coemodel", "--model_args",
               f"config={config},routing_log={routing_log}", "--tasks", TASK, "--output_path", str(out)]
    if log_samples:
        command.append("--log_samples")
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


def harness_accuracy(out: Path) -> float:
    paths = sorted(out.rglob("*_results.json"))
    if not paths:
        raise DemoError(f"lmms_eval wrote no *_results.json under {out}.")
    return float(json.loads(paths[-1].read_text())["results"][TASK][METRIC])


def run_mmmu_pro(levels: Sequence[str], router_dir: Path | None, output: Path, limit: int | None,
                 log_samples: bool) -> list[dict[str, Any]]:
    """Seed, run lmms-eval once per router, print the comparison; returns one summary per run."""
    from benchcoe_plugins.offline.mmmu_pro import is_seeded, seed_mmmu_pro_cache

    if not is_seeded(output / DATASETS_CACHE):
        print(f"seeded the offline MMMU-Pro into {seed_mmmu_pro_cache(output / DATASETS_CACHE)}", flush=True)
    data = load_data(limit)
    runs = []
    for choice in choose_routers(levels, router_dir, data):
        config = write_config(choice, output)
        out = output / f"mmmu_pro_{choice.level}"
        routing_log = out / "routing.jsonl"
        stdout = run_harness(lmms_eval_command(config, out, routing_log, limit, log_samples), output)
        print(stdout[stdout.find("|"):] if "|" in stdout else stdout, flush=True)
        routing = read_routing(routing_log, data)
        if sorted(routing) != sorted(data.docs.values()):
            raise DemoError(f"the routing log {routing_log} covers {len(routing)} documents, the run {len(data.docs)}.")
        runs.append({"choice": choice, "harness_accuracy": harness_accuracy(out),
                     "records_accuracy": data.accuracy(routing, sorted(routing)), "routing": routing,
                     "config": str(config)})
    print(f"MMMU-Pro standard (10 options), test: {len(data.docs)} documents evaluated by lmms-eval's "
          f"{TASK}{'' if limit is None else f' (--limit {limit})'}.")
    print("The offline copy holds the real question text; every image is a blank placeholder (the records hold "
          "no images).\nThe experts replay their recorded answers, so the images do not matter here.")
    print("Accuracy (%) of mmmu_acc.\n")
    print(comparison(data, runs, pool=VLM_POOL))
    print()
    summaries = []
    for run_info in runs:
        choice = run_info["choice"]
        recomputed = round(run_info["records_accuracy"], DECIMALS)
        agree = run_info["harness_accuracy"] == recomputed
        print(f"{choice.level}-level: harness mmmu_acc {run_info['harness_accuracy']:.5f}, recomputed from the records "
              f"and the routing log {run_info['records_accuracy']:.7f} (rounded {recomputed:.5f}) -> "
              f"{'equal' if agree else 'DIFFERENT'}")
        print(f"  router {choice.folder}\n  held-out split: {choice.split_note}")
        summaries.append({"task": TASK, "level": choice.level, "router": str(choice.folder), "config": run_info["config"],
                          "harness_accuracy": run_info["harness_accuracy"],
                          "records_accuracy": run_info["records_accuracy"], "equal": agree})
    return summaries
