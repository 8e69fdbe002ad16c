"""Readers for harness ``--log_samples`` JSONL (lm-eval and lmms-eval).

lm-eval rows: doc_id, doc, target, arguments, resps, filtered_resps, doc_hash, filter, and one
field per metric (exact_match, acc, ...), one row per document and filter. lmms-eval rows:
doc_id, target, resps, filtered_resps, doc_hash, input, and metric fields (e.g. mmmu_acc, a
dict often holding the document's id) -- no ``doc``. The task is read from the file name:
lm-eval writes ``samples_<task>_<timestamp>.jsonl``, lmms-eval ``<timestamp>_samples_<task>.jsonl``.
Documents are joined across experts on (task, the document's own id: question_id / id, from the
doc or a metric dict, else the harness doc_id). lmms-eval's doc_hash is not a document key: it
can be the same for every row of a task.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchcoe_plugins.core.documents import DEFAULT_QUESTION_FIELDS, RoutingDocument, question_text, subject_of
from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.core.harness_files import task_from_filename
from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.training.dataset import STABLE_ID_FIELDS, BenchmarkData, ExpertRow, join_experts, stable_id
from benchcoe_plugins.training.mmmu_acc import mmmu_row_score

# lmms-eval 0.7.3's mmstar logs its per-document score as "average" (a dict holding "score")
DEFAULT_METRICS = ("exact_match", "acc", "mmmu_acc", "acc_norm", "mmstar_acc", "accuracy", "score", "average")
QUESTION_FIELDS = DEFAULT_QUESTION_FIELDS  # what the run-time router reads of a document (core/documents.py)
NOT_METRICS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "doc_hash", "prompt_hash",
               "target_hash", "input", "filter", "metrics"}


def task_of(path: Path) -> str:
    task = task_from_filename(path)
    if task is None:
        raise RecordsError(f"{path} is not a harness sample log (expected samples_<task>_<date>.jsonl from lm-eval "
                           f"or <date>_samples_<task>.jsonl from lmms-eval).")
    return task


def sample_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*samples_*.jsonl") if task_from_filename(p)))
        elif path.is_file():
            files.append(path)
        else:
            raise RecordsError(f"sample log {path} does not exist.")
    if not files:
        raise RecordsError(f"no sample logs (samples_*.jsonl) under {[str(p) for p in paths]}: run the harness with "
                           f"--log_samples.")
    return files


def score_in_unit_range(value: float, name: str, row: Mapping[str, Any], path: Path) -> float:
    """A document's score as a router learns it: a finite number in [0, 1] (1 = right). A count or a
    loss (perplexity, BLEU in points, ...) would be read as accuracy, so it is refused."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise RecordsError(f"{path}: metric {name!r} is {value} for document {row.get('doc_id')}; a router learns from "
                           f"a score in [0, 1] (1 = right). Choose another metric with --metric.")
    return float(value)


def correctness(row: Mapping[str, Any], metric: str | None, path: Path) -> tuple[float, str]:
    """(0/1 or fractional score, metric used) of one sample row. An lmms-eval ``mmmu_acc`` dict is scored
    as lmms-eval scores it (:mod:`benchcoe_plugins.training.mmmu_acc`)."""
    names = [metric] if metric else [m for m in DEFAULT_METRICS if m in row]
    if not names or names[0] not in row:
        numeric = sorted(k for k, v in row.items() if k not in NOT_METRICS and isinstance(v, (int, float, dict)))
        wanted = f"metric {metric!r}" if metric else f"default metric ({', '.join(DEFAULT_METRICS)})"
        raise RecordsError(f"{path}: sample rows have no {wanted}; metric fields present: {numeric}. "
                           f"Choose one with --metric.")
    name = names[0]
    value = row[name]
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return score_in_unit_range(value, name, row, path), name
    if isinstance(value, dict):
        for field in ("score", "acc", "correct", "exact_match"):
            if isinstance(value.get(field), (int, float, bool)):
                return score_in_unit_range(value[field], f"{name}.{field}", row, path), name
        if "answer" in value and "parsed_pred" in value:
            score = mmmu_row_score(value)
            if score is None:
                raise RecordsError(f"{path}: metric {name!r} of document {row.get('doc_id')} pairs answer "
                                   f"{value['answer']!r} with parsed_pred {value['parsed_pred']!r}, a row lmms-eval "
                                   f"leaves unscored (both must be a letter, or both a list); use the log lmms-eval "
                                   f"wrote, or choose another metric with --metric.")
            return score, name
    raise RecordsError(f"{path}: metric {name!r} has value {value!r}, which is not a score. Choose another with --metric.")


def row_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's document (lm-eval), else what a metric dict says of it (lmms-eval: id, subdomain)."""
    doc = row.get("doc")
    if isinstance(doc, Mapping):
        return dict(doc)
    for value in row.values():
        if isinstance(value, Mapping) and any(value.get(f) not in (None, "") for f in STABLE_ID_FIELDS):
            return {k: value[k] for k in (*STABLE_ID_FIELDS, "subdomain", "subject") if k in value}
    return {}


def first_response(row: Mapping[str, Any]) -> str | None:
    """The generated text of the row's first response (``resps``: one list of responses per request), if
    any. A log-likelihood row's response is a [log-prob, is-greedy] pair, not text: None."""
    value = row.get("resps")
    if isinstance(value, list) and value and isinstance(value[0], list) and value[0]:
        value = value[0][0]
    return value if isinstance(value, str) else None


def logged_prompt(row: Mapping[str, Any]) -> str:
    """The prompt the harness logged for the row (lmms-eval ``input``, lm-eval's first argument), or ""."""
    if isinstance(row.get("input"), str):
        return row["input"]
    arguments = row.get("arguments")
    if isinstance(arguments, dict):
        first = next(iter(arguments.values()), {})
        if isinstance(first, dict) and first.get("arg_0"):
            return str(first["arg_0"])
    return ""


def routing_text(row: Mapping[str, Any], question_fields: Sequence[str]) -> str:
    """The text the router learns from: what the run-time router reads of the document
    (:func:`question_text`: its question fields, joined), else the logged prompt."""
    doc = row.get("doc")
    return question_text(doc if isinstance(doc, Mapping) else {}, question_fields, logged_prompt(row), "", None)


def doc_subject(task: str, doc: Mapping[str, Any]) -> str | None:
    """The subject a row's document (:func:`row_doc`) names, or None."""
    subject = subject_of(task, doc) if doc else None
    if subject is None and doc.get("subdomain"):  # lmms-eval metric dicts
        subject = str(doc["subdomain"])
    return subject


def read_expert_log(paths: Sequence[str | Path], metric: str | None = None,
                    question_fields: Sequence[str] = QUESTION_FIELDS, filter_name: str | None = None,
                    duplicate_fix: str = "give each expert one run's sample logs") -> tuple[dict[Any, ExpertRow], set[str]]:
    """One row per document; a task scored through several filters needs ``filter_name``. A document
    logged twice is an error ending with ``duplicate_fix``, which says what the caller's user should give."""
    rows: dict[Any, ExpertRow] = {}
    logged_in: dict[Any, Path] = {}  # the file each document came from, to name both files of a duplicate
    used: set[str] = set()
    for path in sample_files(paths):
        task = task_of(path)
        parsed = list(read_jsonl(path))
        for number, row in enumerate(parsed, 1):
            if not isinstance(row, dict):
                raise RecordsError(f"{path}: row {number} is a JSON {type(row).__name__}, not an object; "
                                   f"is this a --log_samples file?")
            if "doc_id" not in row:
                raise RecordsError(f"{path}: rows lack doc_id; is this a --log_samples file?")
        filters = sorted({str(row["filter"]) for row in parsed if row.get("filter") is not None})
        # --filter chooses among a task's several filters; a task scored through one keeps its rows
        # (lm-eval writes "none" for it), so one run of several tasks stays readable
        choosing = filter_name is not None and len(filters) > 1
        if choosing and filter_name not in filters:
            raise RecordsError(f"{path}: no rows of filter {filter_name!r}; its filters are {filters}.")
        if filter_name is None and len(filters) > 1:
            raise RecordsError(f"{path}: task {task} is scored through several filters {filters}; choose the one "
                               f"that gives correctness with --filter NAME.")
        for row in parsed:
            if choosing and row.get("filter") not in (None, filter_name):
                continue
            score, name = correctness(row, metric, path)
            used.add(name)
            doc = row_doc(row)
            document = RoutingDocument(task, row["doc_id"], routing_text(row, question_fields), doc)
            key = (task, stable_id(document))
            if key in rows:
                where = "twice in this file" if logged_in[key] == path else f"in {logged_in[key].name} too"
                raise RecordsError(f"{path}: document {key[1]} of {task} appears {where} (two runs of one task in the "
                                   f"same folder?); {duplicate_fix}.")
            logged_in[key] = path
            # a task without a subject field (e.g. gsm8k or arc) is its own subject, which the subject and
            # query routers then learn to predict from the text like any subject
            rows[key] = ExpertRow(document, score, doc_subject(task, doc) or task, first_response(row))
    return rows, used


def check_same_metrics(metrics: Mapping[str, set[str]], whose: str) -> None:
    """Refuses logs scored with different metrics (``metrics``: name -> metrics its rows were scored with):
    their accuracies are not comparable. ``whose`` names what the names are ("experts")."""
    if len({frozenset(used) for used in metrics.values()}) > 1:
        raise RecordsError(f"{whose} were scored with different metrics {metrics}; pass --metric to pick one.")


def load_sample_logs(expert_paths: Mapping[str, Sequence[str | Path]], metric: str | None = None,
                     on_missing: str = "drop", question_fields: Sequence[str] = QUESTION_FIELDS,
                     filter_name: str | None = None) -> BenchmarkData:
    """``expert_paths``: expert name -> sample files or output folders of that expert's run."""
    if len(expert_paths) < 2:
        raise RecordsError(f"routing needs at least two experts' sample logs; got {list(expert_paths)}. "
                           f"Pass --samples NAME=PATH once per expert.")
    per_expert: dict[str, dict[Any, ExpertRow]] = {}
    metrics: dict[str, set[str]] = {}
    for expert, paths in expert_paths.items():
        per_expert[expert], metrics[expert] = read_expert_log(paths, metric, question_fields, filter_name)
        if not per_expert[expert]:
            raise RecordsError(f"the sample logs of expert {expert!r} are empty ({list(map(str, paths))}).")
    check_same_metrics(metrics, "experts")
    data = join_experts(per_expert, source="harness sample logs", on_missing=on_missing)
    if data.documents and not any(d.doc.get(f) for d in data.documents for f in question_fields):
        print("benchcoe: note: these sample logs hold no documents (lmms-eval logs none), so a text router learns "
              "from the prompt the harness logged ('input'), while at run time it reads the document's question "
              "field; to train on the questions themselves, use records (--records).")
    return data
