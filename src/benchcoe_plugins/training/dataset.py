"""The training table: documents x experts correctness, joined on a stable key, and splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchcoe_plugins.core.documents import RoutingDocument, normalize_subject
from benchcoe_plugins.core.errors import RecordsError

SPLIT_NAMES = ("train", "validation", "test")


STABLE_ID_FIELDS = ("question_id", "id")  # a document's own id; the harness doc_id is only a position


def stable_id(document: RoutingDocument) -> str:
    """The document's own id (e.g. MMLU-Pro ``question_id``, MMMU ``id``), else the harness doc_id."""
    doc = document.doc if isinstance(document.doc, Mapping) else {}
    return next((str(doc[f]) for f in STABLE_ID_FIELDS if doc.get(f) not in (None, "")), str(document.doc_id))


def key_string(document: RoutingDocument) -> str:
    """The split's key of a document: the same for records and sample logs of the same question."""
    return f"{document.task}/{stable_id(document)}"


@dataclass(frozen=True)
class ExpertRow:
    """One expert's result on one document."""

    document: RoutingDocument
    correct: float
    subject: str | None = None
    output: str | None = None  # the expert's answer text, where the source logs it (sample logs)


@dataclass
class BenchmarkData:
    documents: list[RoutingDocument]
    experts: list[str]
    correct: np.ndarray
    subjects: list[str | None]
    source: str = ""
    missing: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.documents)

    def keys(self) -> list[str]:
        return [key_string(d) for d in self.documents]

    def subset(self, index: Sequence[int] | np.ndarray) -> "BenchmarkData":
        index = np.asarray(index, dtype=int)
        return BenchmarkData([self.documents[i] for i in index], list(self.experts), self.correct[index],
                             [self.subjects[i] for i in index], self.source, self.missing)

    def select_experts(self, experts: Sequence[str]) -> "BenchmarkData":
        unknown = [e for e in experts if e not in self.experts]
        if unknown:
            raise RecordsError(f"unknown experts {unknown}; the data has {self.experts}.")
        columns = [self.experts.index(e) for e in experts]
        return BenchmarkData(self.documents, list(experts), self.correct[:, columns], self.subjects, self.source,
                             {e: self.missing.get(e, []) for e in experts})

    def summary(self) -> dict[str, Any]:
        subjects = [s for s in self.subjects if s]
        return {
            "source": self.source,
            "documents": len(self.documents),
            "experts": list(self.experts),
            "tasks": sorted({d.task for d in self.documents}),
            "subjects": {s: subjects.count(s) for s in sorted(set(subjects))},
            "expert_accuracy": {e: round(float(a), 6) for e, a in zip(self.experts, self.correct.mean(axis=0))}
            if len(self.documents) else {},
            "documents_missing_per_expert": {e: len(k) for e, k in self.missing.items() if k},
        }


def join_experts(per_expert: Mapping[str, Mapping[Any, ExpertRow]], source: str = "",
                 on_missing: str = "drop") -> BenchmarkData:
    """Join experts' rows on their keys. Documents some expert lacks are reported in
    ``missing`` (``on_missing="drop"``) or raise (``"error"``); never silently dropped."""
    if len(per_expert) < 2:
        raise RecordsError(f"routing needs at least two experts; got {list(per_expert)}. Give each expert's "
                           f"records or sample logs.")
    for expert, rows in per_expert.items():
        if not rows:
            raise RecordsError(f"expert {expert!r} has no documents: its records or sample log are empty.")
    experts = list(per_expert)
    key_sets = {e: set(rows) for e, rows in per_expert.items()}
    common = set.intersection(*key_sets.values())
    every = set.union(*key_sets.values())
    if not common:
        raise RecordsError("the experts share no documents (mismatched tasks, ids or benchmark versions?): "
                           + "; ".join(f"{e}: {len(k)} documents, e.g. {sorted(map(str, k))[:2]}" for e, k in key_sets.items()))
    missing = {e: sorted(str(k) for k in every - key_sets[e]) for e in experts}
    if on_missing == "error" and any(missing.values()):
        detail = "; ".join(f"{e} lacks {len(k)} (e.g. {k[:3]})" for e, k in missing.items() if k)
        raise RecordsError(f"documents missing for some experts: {detail}. Re-run those experts on the same tasks "
                           f"and limit, or allow dropping them.")
    ordered = sorted(common, key=lambda k: (str(k[0]), str(k[1]).zfill(12)) if isinstance(k, tuple) else str(k))
    first = per_expert[experts[0]]
    documents = [first[k].document for k in ordered]
    subjects = [next((per_expert[e][k].subject for e in experts if per_expert[e][k].subject), None) for k in ordered]
    subjects = [normalize_subject(s) if s else None for s in subjects]
    correct = np.array([[per_expert[e][k].correct for e in experts] for k in ordered], dtype=np.float32)
    return BenchmarkData(documents, experts, correct, subjects, source, {e: m for e, m in missing.items() if m})


TEST_FRACTION = 0.3  # benchcoe train's default split: 60 % train / 10 % validation / 30 % test
VALIDATION_FRACTION = 0.1


def split_indices(n: int, seed: int, test_fraction: float = TEST_FRACTION,
                  validation_fraction: float = VALIDATION_FRACTION) -> dict[str, np.ndarray]:
    """Random train / validation / test indices (fractions of all ``n``)."""
    if not 0 < test_fraction < 1 or not 0 <= validation_fraction < 1 or test_fraction + validation_fraction >= 1:
        raise RecordsError(f"bad split fractions: test {test_fraction}, validation {validation_fraction}.")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * validation_fraction))
    if n - n_test - n_val < 2 or n_test < 1:
        raise RecordsError(f"{n} documents are too few for a train/validation/test split.")
    return {"test": np.sort(order[:n_test]), "validation": np.sort(order[n_test:n_test + n_val]),
            "train": np.sort(order[n_test + n_val:])}


def fit_and_test_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The default split by ``seed`` as (train + validation, test): what a router refitted on train +
    validation (``benchcoe train --refit``) is fitted on, and what it is scored on."""
    indices = split_indices(n, seed)
    return np.concatenate([indices["train"], indices["validation"]]), indices["test"]


def parts_subset(data: BenchmarkData, indices: Mapping[str, np.ndarray], parts: Sequence[str]) -> BenchmarkData:
    """The documents of the named split parts (e.g. ``["train", "validation"]``) together."""
    return data.subset(np.concatenate([indices[p] for p in parts]))


def split_from_keys(data: BenchmarkData, split: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Indices of a given split ({"train": [task/doc_id, ...], "validation": [...], "test": [...]})."""
    position = {k: i for i, k in enumerate(data.keys())}
    out: dict[str, np.ndarray] = {}
    for name in SPLIT_NAMES:
        keys = list(split.get(name, []))
        absent = [k for k in keys if k not in position]
        if absent and len(absent) == len(keys) and keys:
            raise RecordsError(f"none of the {len(keys)} '{name}' documents of the split are in the data "
                               f"(e.g. {absent[:2]}): the split belongs to other records.")
        out[name] = np.array(sorted(position[k] for k in keys if k in position), dtype=int)
    return out


def note_outside_split(data: BenchmarkData, split: Mapping[str, Sequence[str]], command: str) -> None:
    """Prints, as ``command``, how many of the data's documents are in no part of ``split`` (neither
    fitted on nor scored); nothing when every one is in some part."""
    named = {k for n in SPLIT_NAMES for k in split.get(n, [])}
    outside = [k for k in data.keys() if k not in named]
    if outside:
        tasks = sorted({k.rsplit("/", 1)[0] for k in outside})
        print(f"{command}: note: {len(outside)} of the data's {len(data)} documents are in no part of the router's "
              f"split (tasks {', '.join(tasks[:5])}{', ...' if len(tasks) > 5 else ''}); they are neither fitted on "
              f"nor scored. A split from other data, or logs of more tasks than the router saw.")


def read_split(path: Path) -> dict[str, list[str]]:
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RecordsError(f"cannot read split file {path}: {error}") from None
    if not isinstance(split, dict) or not any(split.get(n) for n in SPLIT_NAMES):
        raise RecordsError(f"{path} is not a split file: expected lists under {SPLIT_NAMES}.")
    for name in SPLIT_NAMES:
        keys = split.get(name) or []
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise RecordsError(f"{path}: '{name}' must be a list of task/doc_id strings.")
        if len(set(keys)) != len(keys):
            raise RecordsError(f"{path}: '{name}' lists {len(keys) - len(set(keys))} documents more than once; give "
                               f"each document once, or a figure would count it twice.")
    fitted_on = split.get("fitted_on", ["train"])
    if not isinstance(fitted_on, list) or not fitted_on or not set(fitted_on) <= {"train", "validation"}:
        raise RecordsError(f"{path}: 'fitted_on' is {fitted_on!r}; it lists the parts the router was fitted on, "
                           f"[\"train\"] or [\"train\", \"validation\"].")
    parts = {name: set(split.get(name) or []) for name in SPLIT_NAMES}
    for index, first in enumerate(SPLIT_NAMES):
        for second in SPLIT_NAMES[index + 1:]:
            shared = parts[first] & parts[second]
            if shared:
                raise RecordsError(f"{path}: {len(shared)} documents are in both '{first}' and '{second}' (e.g. "
                                   f"{sorted(shared)[:2]}), so a figure on them would not be held-out. Give each "
                                   f"document one part.")
    return split


def write_split(path: Path, data: BenchmarkData, indices: Mapping[str, np.ndarray], seed: int | None,
                fitted_on: Sequence[str] = ("train",), scenario: Mapping[str, Any] | None = None,
                test_keys: Sequence[str] | None = None) -> None:
    """``fitted_on``: the parts the router's final fit saw (``test`` never is). ``test_keys``: the
    test documents when they come from another record set (transfer scenario)."""
    keys = data.keys()
    payload = {"seed": seed, **{name: [keys[i] for i in indices[name]] for name in SPLIT_NAMES},
               "fitted_on": list(fitted_on)}
    if test_keys is not None:
        payload["test"] = list(test_keys)
    if scenario is not None:
        payload["scenario"] = dict(scenario)
    Path(path).write_text(json.dumps(payload) + "\n")


def require_held_out(routers: Sequence[tuple[str, Path]], test_keys: set[str]) -> None:
    """Every router is scored on ``test_keys``: none of them may have been fitted on one of those."""
    for label, folder in routers:
        if not (folder / "split.json").is_file():
            continue
        own = read_split(folder / "split.json")
        fitted = {k for part in own.get("fitted_on", ["train"]) for k in own.get(part, [])}
        overlap = len(fitted & test_keys)
        if overlap:
            raise RecordsError(f"router {label!r} was fitted on {overlap} of the {len(test_keys)} test documents (its "
                               f"split.json differs from the one used), so its figures would not be held-out. Compare "
                               f"routers trained on the same split (same --seed), or pass --split with documents "
                               f"none of them saw.")


def why_nothing_to_learn(data: BenchmarkData) -> str | None:
    """Why a router cannot learn from ``data`` (one expert; no document where experts differ), or None."""
    if len(data.experts) < 2:
        return f"only one expert ({data.experts}): there is nothing to route between. Give at least two experts"
    correct = np.asarray(data.correct)
    if not len(correct):
        return "there are no training documents"
    if (correct == correct[:, :1]).all():
        if (correct == 1).all():
            state = "every expert is right on every training document"
        elif (correct == 0).all():
            state = "every expert is wrong on every training document"
        else:
            state = "the experts score the same on every training document"
        return f"{state}, so any expert does as well as a router. Check the metric (--metric) and the records"
    return None
