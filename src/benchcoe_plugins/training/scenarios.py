"""Evaluation scenarios: which documents a router trains on and which it is tested on.

- ``random``: a random train / validation / test split by seed (in-distribution).
- ``field``: split by a document field (``--train-where FIELD=PATTERN,...``): train on the
  documents whose field matches, test on the rest (or on ``--test-where``); e.g. MMLU-Pro
  ``src=ori_mmlu*`` trains on the original-MMLU questions and tests on the new ones.
- ``transfer``: train on one record set, test on another with the same experts
  (``--test-source KIND=PATH``, e.g. ``records=DIR``; ``--test-where`` narrows it).
- ``in-sample``: tested on the documents the router was fitted on (the paper's naive
  scenario). Never a held-out figure; always labelled so.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.dataset import BenchmarkData

IN_SAMPLE_LABEL = "IN-SAMPLE (the router was fitted on these documents; not a held-out figure)"


def add_scenario_arguments(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """``training``: ``benchcoe train``'s options; else ``evaluate``'s (no --train-where: the split says)."""
    group = parser.add_argument_group("scenario (default: random split)" if training else "scenario")
    if training:
        group.add_argument("--train-where", metavar="FIELD=PATTERN[,PATTERN...]",
                           help="train (and validate) only on documents whose FIELD matches one of the glob "
                                "patterns, e.g. src=ori_mmlu* or category=math,physics; the rest is the test part")
    group.add_argument("--test-where", metavar="FIELD=PATTERN[,PATTERN...]",
                       help="test only on documents matching this (default: those --train-where leaves out, "
                            "all documents of --test-source, or the split's held-out part)")
    group.add_argument("--test-source", metavar="KIND=PATH",
                       help="test on another record set with the same experts; KIND is a source option "
                            "(records, mmmu, samples, ...) e.g. records=../other_records; the baselines still "
                            "come from the training documents")


def parse_where(text: str, flag: str) -> tuple[str, list[str]]:
    field, sep, values = text.partition("=")
    patterns = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not field.strip() or not patterns:
        raise RecordsError(f"{flag} {text!r}: expected FIELD=PATTERN[,PATTERN...], e.g. {flag} src=ori_mmlu*.")
    return field.strip(), patterns


def field_value(document: Any, field: str) -> Any:
    """A document's field: its doc's ``field``, else the routing document's attribute (task, doc_id)."""
    if isinstance(document.doc, dict) and field in document.doc:
        return document.doc[field]
    return getattr(document, field, None)


def where_mask(data: BenchmarkData, where: str, flag: str) -> np.ndarray:
    """Boolean mask of the documents whose field matches one of the patterns (case-insensitive globs)."""
    field, patterns = parse_where(where, flag)
    values = [field_value(d, field) for d in data.documents]
    if all(v is None for v in values):
        example = sorted(data.documents[0].doc) if data.documents and isinstance(data.documents[0].doc, dict) else []
        raise RecordsError(f"{flag}: no document of {data.source} has a field {field!r}; fields: {example}.")
    lowered = [p.lower() for p in patterns]
    mask = np.array([v is not None and any(fnmatch.fnmatchcase(str(v).lower(), p) for p in lowered) for v in values])
    if not mask.any():
        shown = sorted({str(v) for v in values if v is not None})[:5]
        raise RecordsError(f"{flag} {where!r}: no document matches; values of {field!r} look like {shown}.")
    return mask


def field_split(data: BenchmarkData, train_where: str, test_where: str | None, seed: int,
                validation_fraction: float) -> dict[str, np.ndarray]:
    """Train / validation from the documents matching ``train_where`` (validation: a random
    ``validation_fraction`` of them by ``seed``), test from the rest (or from ``test_where``)."""
    inside = where_mask(data, train_where, "--train-where")
    test_mask = where_mask(data, test_where, "--test-where") if test_where else ~inside
    if (test_mask & inside).any():
        raise RecordsError(f"--train-where and --test-where overlap on {int((test_mask & inside).sum())} documents; "
                           f"a shifted test part must not contain training documents.")
    if not test_mask.any():
        raise RecordsError(f"--train-where {train_where!r} matches every document; nothing is left to test on.")
    return {**training_parts(np.flatnonzero(inside), seed, validation_fraction), "test": np.flatnonzero(test_mask)}


def training_parts(candidates: np.ndarray, seed: int, validation_fraction: float) -> dict[str, np.ndarray]:
    """Train / validation indices from ``candidates``: a random ``validation_fraction`` validates (by ``seed``)."""
    if not 0 <= validation_fraction < 1:
        raise RecordsError(f"bad --validation-fraction {validation_fraction}: expected 0 <= f < 1.")
    pool = np.random.default_rng(seed).permutation(np.asarray(candidates, dtype=int))
    n_val = int(round(len(pool) * validation_fraction))
    if len(pool) - n_val < 2:
        raise RecordsError(f"{len(pool)} training documents are too few to train on (check --train-where).")
    return {"train": np.sort(pool[n_val:]), "validation": np.sort(pool[:n_val])}


def load_test_source(args: argparse.Namespace) -> BenchmarkData:
    """The ``--test-source KIND=PATH`` data, read with the same options (experts, metric) as the training data."""
    from benchcoe_plugins.training.data_args import SOURCE_OPTIONS, load_data

    kind, sep, path = str(args.test_source).partition("=")
    kind = kind.strip().replace("-", "_")
    if not sep or not path.strip() or kind not in SOURCE_OPTIONS:
        raise RecordsError(f"--test-source {args.test_source!r}: expected KIND=PATH with KIND one of "
                           f"{', '.join(SOURCE_OPTIONS)}, e.g. --test-source records=../shared/data/mmlu_pro.")
    test_args = copy.copy(args)
    for name in SOURCE_OPTIONS:
        setattr(test_args, name, [] if name == "samples" else None)
    setattr(test_args, kind, sample_entries(path) if kind == "samples" else Path(path))
    return load_data(test_args)


def sample_entries(value: str) -> list[str]:
    """``--test-source samples=...``: ``EXPERT=PATH,EXPERT=PATH`` or a folder with one subfolder per
    expert (named as the expert), as ``--samples EXPERT=PATH`` entries."""
    value = value.strip()
    if "=" in value:
        return [entry.strip() for entry in value.split(",") if entry.strip()]
    folder = Path(value)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not subfolders:
        raise RecordsError(f"--test-source samples={value}: expected a folder with one subfolder of sample logs "
                           f"per expert (named as the expert), or EXPERT=PATH,EXPERT=PATH.")
    return [f"{p.name}={p}" for p in subfolders]


def require_disjoint(fitted: BenchmarkData, test: BenchmarkData) -> None:
    """A transfer test set must not hold documents the router was fitted on."""
    shared = set(fitted.keys()) & set(test.keys())
    if shared:
        raise RecordsError(f"{len(shared)} of the {len(test)} --test-source documents are also training documents "
                           f"(e.g. {sorted(shared)[:2]}), so the figures would not be held-out. Test on other "
                           f"documents, or narrow them with --test-where / the training part with --train-where.")


def scenario_summary(args: argparse.Namespace, in_sample: bool = False) -> dict[str, Any]:
    """What the evaluation's documents are, in words, for the reports and the console."""
    if in_sample:
        return {"name": "in-sample", "in_sample": True, "description": IN_SAMPLE_LABEL}
    if getattr(args, "test_source", None):
        where = f" where {args.test_where}" if getattr(args, "test_where", None) else ""
        train = f" where {args.train_where}" if getattr(args, "train_where", None) else ""
        return {"name": "transfer", "in_sample": False,
                "description": f"trained on the main data{train}, tested on {args.test_source}{where} (same experts)"}
    if getattr(args, "train_where", None):
        test = getattr(args, "test_where", None) or "the other documents"
        return {"name": "field", "in_sample": False,
                "description": f"trained on documents where {args.train_where}, tested on {test}"}
    return {"name": "random", "in_sample": False,
            "description": f"random split by seed {getattr(args, 'seed', None)}"}


def recorded_scenario(split: dict[str, Any], split_path: Path, router_metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The scenario a split file records. Files written before scenarios were recorded hold only the seed
    of their random split (``router_metadata``, the router's own, says it when the file lacks it); a split
    with no seed is labelled by its file, never as "seed None"."""
    if split.get("scenario"):
        return dict(split["scenario"])
    recorded_split = ((router_metadata or {}).get("data") or {}).get("split") or {}
    seed = split["seed"] if "seed" in split else recorded_split.get("seed")
    if seed is None:
        return {"name": "split file", "in_sample": False, "description": f"the split of {split_path}"}
    return {"name": "random", "in_sample": False, "description": f"random split by seed {seed}"}


def require_experts(test: BenchmarkData, experts: Sequence[str]) -> None:
    missing = [e for e in experts if e not in test.experts]
    if missing:
        raise RecordsError(f"the test data lacks experts {missing} of the training data; a transfer scenario "
                           f"needs the same experts in both (give --experts present in both).")
