"""``benchcoe report``: the Bench-CoE paper's MMLU-Pro figure -- per subject, each expert,
the subject-level CoE and the query-level CoE -- as PNG + Markdown (+ JSON).

Two sources:
- records + router checkpoints: ``--records DIR --experts ... --router subject=router_ckpts/mmlu_pro_subject
  --router query=router_ckpts/mmlu_pro_query``; evaluated on the first router's held-out test split.
- harness results folders: ``--run NAME=DIR`` per expert run and per CoE run (each holding
  results_*.json + samples_*.jsonl per task; a CoE run's routing_*.jsonl adds its routing counts), read
  as training reads sample logs (--filter, --metric) and compared over the documents every run scored
  (said in the output; --strict-missing refuses runs that scored different documents).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.data_args import add_data_arguments, check_data_arguments, given_flags, load_data
from benchcoe_plugins.training.dataset import ExpertRow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--router", action="append", default=[], metavar="LABEL=DIR",
                        help="a router checkpoint to compare (records mode); repeatable")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="a harness output folder (results mode); repeatable")
    parser.add_argument("--split", type=Path, help="split file (records mode; default: first router's split.json)")
    parser.add_argument("--output", type=Path, default=Path("benchcoe_report"), help="report folder")
    parser.add_argument("--title", default="MMLU-Pro: experts vs. Bench-CoE per subject")


def _pairs(items: list[str], flag: str) -> list[tuple[str, Path]]:
    pairs = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).name, item
        pairs.append((label, Path(path)))
    if len({label for label, _ in pairs}) != len(pairs):
        raise RecordsError(f"{flag} labels repeat: {[label for label, _ in pairs]}")
    return pairs


def from_records(args: argparse.Namespace) -> tuple[list[str], dict[str, dict[str, float]], dict[str, int], dict[str, Any]]:
    from benchcoe_plugins.routers.base import Router
    from benchcoe_plugins.training.dataset import note_outside_split, read_split, require_held_out, split_from_keys
    from benchcoe_plugins.routers.table import best_single_index
    from benchcoe_plugins.training.dataset import parts_subset
    from benchcoe_plugins.training.metrics import accuracy_of, paired_difference

    check_data_arguments(args)
    pairs = _pairs(args.router, "--router")
    routers = [(label, Router.load(path)) for label, path in pairs]
    if not args.experts and routers:
        # the best single expert a router is compared with must be one it could have chosen
        from benchcoe_plugins.training.evaluate_cli import compared_experts

        args.experts = list(dict.fromkeys(e for _, router in routers for e in compared_experts(router)))
        print(f"benchcoe report: experts: the routers' own, {args.experts} (--experts to choose others)")
    data = load_data(args)
    split_path = args.split or (pairs[0][1] / "split.json" if routers else None)
    if split_path is None or not split_path.is_file():
        raise RecordsError("records mode needs held-out documents: give --router checkpoints (their split.json) "
                           "or --split FILE.")
    split = read_split(split_path)
    require_held_out(pairs, set(split.get("test", [])))
    note_outside_split(data, split, "benchcoe report")
    indices = split_from_keys(data, split)
    test = data.subset(indices["test"])
    fitted = parts_subset(data, indices, split.get("fitted_on", ["train"]))
    if not len(test):
        raise RecordsError(f"no test documents of {split_path} are in the given records.")
    subjects = sorted({s or "(none)" for s in test.subjects})
    series: dict[str, dict[str, float]] = {}
    counts = {s: sum(1 for t in test.subjects if (t or "(none)") == s) for s in subjects}
    mask = {s: [i for i, t in enumerate(test.subjects) if (t or "(none)") == s] for s in subjects}
    for j, expert in enumerate(test.experts):
        series[expert] = {s: float(test.correct[mask[s], j].mean()) for s in subjects}
        series[expert]["overall"] = float(test.correct[:, j].mean())
    routing: dict[str, Any] = {}
    best = best_single_index(fitted.correct) if len(fitted) else None
    if best is not None:
        routing["best_single"] = test.experts[best]
    for label, router in routers:
        # a document the router cannot place goes to the best single expert, as in evaluate
        if router.kind == "cascade":  # the second expert's answer counts where the first's answer escalates
            from benchcoe_plugins.training.evaluate_cli import cascade_choices
            from benchcoe_plugins.training.outputs import expert_outputs

            choices = cascade_choices(router, test, expert_outputs(args, router.first, test))
        else:
            choices = router.predict(test.documents)
        hits = accuracy_of(test.correct, test.experts, choices,
                           fallback=test.experts[best] if best is not None else None)
        series[f"CoE {label}"] = {s: float(hits[mask[s]].mean()) for s in subjects}
        series[f"CoE {label}"]["overall"] = float(hits.mean())
        if best is not None:  # paired with the best single expert of the router's training documents
            every = {**mask, "overall": list(range(len(test)))}
            routing.setdefault("minus_best_single", {})[f"CoE {label}"] = {
                s: paired_difference(hits[rows], test.correct[rows, best]) for s, rows in every.items()}
    counts["overall"] = len(test)
    return subjects + ["overall"], series, counts, routing


def _subject_for(task: str, doc: dict[str, Any]) -> str:
    from benchcoe_plugins.training.sample_logs import doc_subject

    subject = doc_subject(task, doc)
    if subject:
        return subject
    return task.replace("mmlu_pro_", "").replace("_", " ")


def _run_rows(name: str, folder: Path, args: argparse.Namespace) -> tuple[dict[Any, ExpertRow], set[str]]:
    """One harness run's score per document, keyed as training keys documents (task, own id), and the
    metrics it was scored with."""
    from benchcoe_plugins.training.sample_logs import read_expert_log

    if not folder.is_dir():
        raise RecordsError(f"--run {name}: {folder} is not a folder.")
    if not list(folder.rglob("*results*.json")):
        raise RecordsError(f"--run {name}: no results JSON (results_*.json, or lmms-eval's *_results.json) under "
                           f"{folder}; is it a harness --output_path?")
    rows, metrics = read_expert_log([folder], args.metric, filter_name=args.filter_name,
                                    duplicate_fix=f"give --run {name} the output folder of one run (move the other "
                                                  f"run's sample logs out of {folder})")
    if not rows:
        raise RecordsError(f"--run {name}: the sample logs under {folder} are empty.")
    return rows, metrics


def _shared_documents(runs: dict[str, dict[Any, ExpertRow]], strict: bool) -> tuple[list[Any], dict[str, Any]]:
    """The documents every run scored, and a note when some run scored others too."""
    shared = set.intersection(*(set(rows) for rows in runs.values()))
    held = {name: len(rows) for name, rows in runs.items()}
    listed = ", ".join(f"{name} {n}" for name, n in held.items())
    if not shared:
        raise RecordsError(f"the --run folders share no documents (documents per run: {listed}); compare runs of "
                           f"the same tasks.")
    if all(n == len(shared) for n in held.values()):
        return sorted(shared, key=str), {}
    if strict:
        raise RecordsError(f"the --run folders hold different documents (per run: {listed}; {len(shared)} in all "
                           f"of them); run them on the same tasks and --limit, or drop --strict-missing to compare "
                           f"over the shared documents.")
    note = {"documents": len(shared), "documents_per_run": held}
    print(f"benchcoe report: the runs hold different documents ({listed}); every figure is over the {len(shared)} "
          f"documents all of them scored.")
    return sorted(shared, key=str), note


def _routing_counts(folder: Path, rows: dict[Any, ExpertRow], keys: list[Any]) -> dict[str, Any] | None:
    """Documents per expert in a CoE run's routing log, over the compared documents only."""
    from benchcoe_plugins.core.jsonl import read_jsonl

    logs = sorted(folder.rglob("routing_*.jsonl"))
    if not logs:
        return None
    compared = {(rows[key].document.task, str(rows[key].document.doc_id)) for key in keys}
    routed = Counter(row["expert"] for row in read_jsonl(logs[-1])
                     if (row.get("task"), str(row.get("doc_id"))) in compared)
    return {"log": str(logs[-1]), "documents_per_expert": dict(sorted(routed.items()))}


def from_results(args: argparse.Namespace) -> tuple[list[str], dict[str, dict[str, float]], dict[str, int], dict[str, Any]]:
    """Accuracy per subject of each --run, over the documents all runs scored (one filter per task)."""
    from benchcoe_plugins.training.sample_logs import check_same_metrics

    folders = dict(_pairs(args.run, "--run"))
    read = {name: _run_rows(name, folder, args) for name, folder in folders.items()}
    check_same_metrics({name: metrics for name, (_, metrics) in read.items()}, "the --run folders")
    runs = {name: rows for name, (rows, _) in read.items()}
    keys, note = _shared_documents(runs, args.strict_missing)
    first = next(iter(runs.values()))
    subject_of_key = {key: _subject_for(first[key].document.task, dict(first[key].document.doc)) for key in keys}
    subjects = sorted(set(subject_of_key.values()))
    by_subject = {s: [key for key in keys if subject_of_key[key] == s] for s in subjects}
    by_subject["overall"] = keys
    series = {name: {s: sum(rows[key].correct for key in members) / len(members) for s, members in by_subject.items()}
              for name, rows in runs.items()}
    counts = {s: len(members) for s, members in by_subject.items()}
    routing: dict[str, Any] = {}
    for name, rows in runs.items():
        counted = _routing_counts(folders[name], rows, keys)
        if counted:
            routing[name] = counted
    if note:
        routing["shared_documents"] = note
    return subjects + ["overall"], series, counts, routing


def run(args: argparse.Namespace) -> int:
    from benchcoe_plugins.training import plots
    from benchcoe_plugins.training.reports import fmt, interval

    if args.run and (args.records or args.mmmu or args.samples or args.router):
        raise RecordsError("give either --run folders (harness results) or records/samples with --router, not both.")
    records_only = given_flags(args, "--experts", "--limit", "--split")
    if args.run and records_only:
        raise RecordsError(f"{records_only} would have no effect on --run folders, which are read whole; drop "
                           f"{records_only}.")
    if args.run:
        subjects, series, counts, routing = from_results(args)
    else:
        subjects, series, counts, routing = from_records(args)
    output = args.output
    output.mkdir(parents=True, exist_ok=True)
    best = routing.get("best_single")
    values = {(f"{label} (best single)" if label == best else label): [row.get(s, float("nan")) for s in subjects]
              for label, row in series.items()}
    png = plots.grouped_bars(output / "per_subject.png", subjects, values, args.title)
    labels = list(series)
    lines = [f"# {args.title}", "", "| subject | n | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for s in subjects:
        row = [series[label].get(s) for label in labels]
        present = [v for v in row if v is not None]
        best = max(present) if present else None
        cells = [("**" + fmt(v) + "**") if v is not None and v == best else fmt(v) for v in row]
        lines.append(f"| {s} | {counts.get(s, '-')} | " + " | ".join(cells) + " |")
    gains = routing.pop("minus_best_single", {})
    best_expert = routing.pop("best_single", None)
    shared = routing.pop("shared_documents", None)
    if shared:
        held = ", ".join(f"{name} {n}" for name, n in shared["documents_per_run"].items())
        lines += ["", f"Every figure is over the {shared['documents']} documents all runs scored (documents per run: "
                      f"{held})."]
    if routing:
        lines += ["", "Routing: " + "; ".join(f"{k}: {v['documents_per_expert']}" for k, v in routing.items())]
    if gains:
        lines += ["", f"Router - best single expert ({best_expert}, chosen on the routers' training documents), "
                      f"paired per document, accuracy points with SE and bootstrap 95 % interval:", "",
                  "| subject | n | " + " | ".join(gains) + " |", "|---|---|" + "---|" * len(gains)]
        lines += [f"| {s} | {counts.get(s, '-')} | " + " | ".join(interval(gains[label][s]) for label in gains) + " |"
                  for s in subjects]
        for label, rows in gains.items():
            slug = label.replace("CoE ", "").replace(" ", "_").replace("/", "_")
            plots.gains_with_intervals(output / f"gain_{slug}.png", subjects, [rows[s]["difference"] for s in subjects],
                                       [rows[s]["ci95"] for s in subjects],
                                       f"{label} - best single ({best_expert}), held-out, 95 % intervals",
                                       counts=[counts.get(s, 0) for s in subjects])
    (output / "per_subject.md").write_text("\n".join(lines) + "\n")
    (output / "per_subject.json").write_text(json.dumps({"subjects": subjects, "documents": counts,
                                                         "accuracy": series, "routing": routing,
                                                         "best_single": best_expert,
                                                         "router_minus_best_single": gains,
                                                         "shared_documents": shared}, indent=2) + "\n")
    print(f"benchcoe report: {png} and {output / 'per_subject.md'}")
    return 0
