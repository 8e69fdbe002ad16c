"""Readers for harness ``--log_samples`` JSONL (lm-eval and lmms-eval).

lm-eval rows: doc_id, doc, target, arguments, resps, filtered_resps, doc_hash, and one
field per metric (exact_match, acc, ...). lmms-eval rows: doc_id, target, resps,
filtered_resps, doc_hash, input, and metric fields (e.g. mmmu_acc, a dict) -- no ``doc``.
The task is read from the file name ``samples_<task>_<timestamp>.jsonl``. Documents are
joined across experts on (task, a stable doc field such as question_id/id, else the
doc_hash, else doc_id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from benchcoe_plugins.core.documents import RoutingDocument, subject_of
from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.training.dataset import BenchmarkData, ExpertRow, join_experts

DEFAULT_METRICS = ("exact_match", "acc", "mmmu_acc", "acc_norm", "mmstar_acc", "accuracy", "score")
KEY_FIELDS = ("question_id", "id", "doc_id")
QUESTION_FIELDS = ("question", "problem", "query", "input", "text")
NOT_METRICS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "doc_hash", "prompt_hash",
               "target_hash", "input", "filter", "metrics"}


def task_of(path: Path) -> str:
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    if not stem.startswith("samples_"):
        raise RecordsError(f"{path} is not a harness sample log (expected samples_<task>_<timestamp>.jsonl).")
    body = stem[len("samples_"):]
    task, _, stamp = body.rpartition("_")
    return task if task and stamp[:1].isdigit() else body


def sample_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.rglob("samples_*.jsonl")))
        elif path.is_file():
            files.append(path)
        else:
            raise RecordsError(f"sample log {path} does not exist.")
    if not files:
        raise RecordsError(f"no samples_*.jsonl under {[str(p) for p in paths]}: run the harness with --log_samples.")
    return files


def correctness(row: Mapping[str, Any], metric: str | None, path: Path) -> tuple[float, str]:
    """(0/1 or fractional score, metric used) of one sample row."""
    names = [metric] if metric else [m for m in DEFAULT_METRICS if m in row]
    if not names or names[0] not in row:
        numeric = sorted(k for k, v in row.items() if k not in NOT_METRICS and isinstance(v, (int, float, dict)))
        wanted = f"metric {metric!r}" if metric else f"any of the default metrics {list(DEFAULT_METRICS)}"
        raise RecordsError(f"{path}: sample rows have no {wanted}; metric fields present: {numeric}. "
                           f"Choose one with --metric.")
    name = names[0]
    value = row[name]
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return float(value), name
    if isinstance(value, dict):
        for field in ("score", "acc", "correct", "exact_match"):
            if isinstance(value.get(field), (int, float, bool)):
                return float(value[field]), name
        if "answer" in value and "parsed_pred" in value:
            answer, pred = value["answer"], value["parsed_pred"]
            answers = answer if isinstance(answer, list) else [answer]
            preds = pred if isinstance(pred, list) else [pred]
            norm = lambda x: str(x).strip().lower()  # noqa: E731
            return float(any(norm(p) == norm(a) for p in preds for a in answers)), name
    raise RecordsError(f"{path}: metric {name!r} has value {value!r}, which is not a score. Choose another with --metric.")


def stable_key(task: str, row: Mapping[str, Any]) -> tuple[str, str]:
    doc = row.get("doc")
    if isinstance(doc, Mapping):
        for field in KEY_FIELDS[:-1]:
            if doc.get(field) not in (None, ""):
                return task, str(doc[field])
    if row.get("doc_hash"):
        return task, "hash:" + str(row["doc_hash"])
    return task, str(row["doc_id"])


def routing_text(row: Mapping[str, Any], question_fields: Sequence[str]) -> str:
    doc = row.get("doc")
    if isinstance(doc, Mapping):
        for field in question_fields:
            if doc.get(field) not in (None, ""):
                return str(doc[field])
    if isinstance(row.get("input"), str):
        return row["input"]
    arguments = row.get("arguments")
    if isinstance(arguments, dict):
        first = next(iter(arguments.values()), {})
        if isinstance(first, dict) and first.get("arg_0"):
            return str(first["arg_0"])
    return ""


def row_subject(task: str, row: Mapping[str, Any]) -> str | None:
    doc = row.get("doc") if isinstance(row.get("doc"), Mapping) else {}
    subject = subject_of(task, doc) if doc else None
    if subject is None:  # lmms-eval: no doc, but metric dicts often carry the id / subdomain
        for value in row.values():
            if isinstance(value, dict) and ("id" in value or "subdomain" in value):
                subject = subject_of(task, value)
                if subject is None and value.get("subdomain"):
                    subject = str(value["subdomain"])
                if subject:
                    break
    return subject


def read_expert_log(paths: Sequence[str | Path], metric: str | None = None,
                    question_fields: Sequence[str] = QUESTION_FIELDS) -> tuple[dict[Any, ExpertRow], set[str]]:
    rows: dict[Any, ExpertRow] = {}
    used: set[str] = set()
    for path in sample_files(paths):
        task = task_of(path)
        for number, row in enumerate(read_jsonl(path), 1):
            if not isinstance(row, dict):
                raise RecordsError(f"{path}: row {number} is a JSON {type(row).__name__}, not an object; "
                                   f"is this a --log_samples file?")
            if "doc_id" not in row:
                raise RecordsError(f"{path}: rows lack doc_id; is this a --log_samples file?")
            score, name = correctness(row, metric, path)
            used.add(name)
            key = stable_key(task, row)
            doc = row.get("doc") if isinstance(row.get("doc"), Mapping) else {}
            document = RoutingDocument(task, row["doc_id"], routing_text(row, question_fields), doc)
            rows[key] = ExpertRow(document, score, row_subject(task, row))
    return rows, used


def load_sample_logs(expert_paths: Mapping[str, Sequence[str | Path]], metric: str | None = None,
                     on_missing: str = "drop", question_fields: Sequence[str] = QUESTION_FIELDS) -> BenchmarkData:
    """``expert_paths``: expert name -> sample files or output folders of that expert's run."""
    if len(expert_paths) < 2:
        raise RecordsError(f"routing needs at least two experts' sample logs; got {list(expert_paths)}. "
                           f"Pass --samples NAME=PATH once per expert.")
    per_expert: dict[str, dict[Any, ExpertRow]] = {}
    metrics: dict[str, set[str]] = {}
    for expert, paths in expert_paths.items():
        per_expert[expert], metrics[expert] = read_expert_log(paths, metric, question_fields)
        if not per_expert[expert]:
            raise RecordsError(f"the sample logs of expert {expert!r} are empty ({list(map(str, paths))}).")
    if len({frozenset(m) for m in metrics.values()}) > 1:
        raise RecordsError(f"experts were scored with different metrics {metrics}; pass --metric to pick one.")
    return join_experts(per_expert, source="harness sample logs", on_missing=on_missing)
