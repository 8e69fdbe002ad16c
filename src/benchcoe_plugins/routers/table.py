"""Table router: the document's own subject field -> the best expert for that subject.

Needs no training text: the table comes from each expert's per-subject benchmark
accuracy (``fit``) or is written by hand (``from_table``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from benchcoe_plugins.core.documents import DEFAULT_SUBJECT_RULES, RoutingDocument, normalize_subject, subject_of
from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.routers.base import RouteDecision, Router


def best_single_index(correct: np.ndarray) -> int:
    """Column of the expert with the highest accuracy over all documents (ties -> the earlier expert).
    The routers' guard fallback and the reports' baseline both use it, so they agree."""
    return int(np.argmax(np.asarray(correct, dtype=float).mean(axis=0)))


def best_expert_table(subjects: Sequence[str], correct: np.ndarray, experts: Sequence[str],
                      prior: float = 0.0) -> tuple[dict[str, str], dict[str, list[float]]]:
    """Per subject, the expert with the highest accuracy; returns the table and the raw accuracy rows.

    ``correct`` is (n_documents, n_experts) of 0/1. ``prior`` = 0: the raw per-subject argmax
    (ties -> the earlier expert). ``prior`` > 0: each expert's per-subject accuracy is shrunk
    toward its accuracy over all documents, as if ``prior`` documents of that global accuracy
    were added to the subject (:func:`shrunk_accuracy`), and ties go to the best single expert,
    so a subject leaves the best single expert only on clear evidence; ``inf``: the best
    single expert everywhere.
    """
    correct = np.asarray(correct, dtype=float)
    subjects = np.asarray([normalize_subject(s) for s in subjects])
    best = best_single_index(correct)
    table: dict[str, str] = {}
    accuracy: dict[str, list[float]] = {}
    for subject in sorted(set(subjects.tolist())):
        rows = correct[subjects == subject]
        means = rows.mean(axis=0)
        if prior > 0:
            shrunk = shrunk_accuracy(rows, correct.mean(axis=0), prior)
            pick = best if shrunk[best] >= shrunk.max() - 1e-12 else int(np.argmax(shrunk))
        else:
            pick = int(np.argmax(means))
        table[subject] = experts[pick]
        accuracy[subject] = [round(float(m), 6) for m in means]
    return table, accuracy


def shrunk_rate(hits: np.ndarray, count: np.ndarray | float, prior_rate: np.ndarray, weight: float) -> np.ndarray:
    """Empirical-Bayes hit rate: ``count`` observations with ``hits`` plus ``weight`` pseudo-observations
    at ``prior_rate``, i.e. (hits + weight * prior_rate) / (count + weight); arrays broadcast."""
    return (hits + weight * prior_rate) / (count + weight)


def shrunk_accuracy(rows: np.ndarray, global_accuracy: np.ndarray, prior: float) -> np.ndarray:
    """Empirical-Bayes estimate of each expert's accuracy on one subject from its ``rows``
    (documents x experts, 0/1): (hits + prior * global accuracy) / (documents + prior)."""
    if np.isinf(prior):
        return np.asarray(global_accuracy, dtype=float)
    return shrunk_rate(np.asarray(rows, dtype=float).sum(axis=0), len(rows), np.asarray(global_accuracy, dtype=float),
                       prior)


class TableRouter(Router):
    """Routes by ``subject_rules`` (which doc field holds the subject, per task pattern)."""

    kind = "table"

    def __init__(self, subject_rules: list[dict[str, str]] | None = None) -> None:
        self.subject_rules = subject_rules

    def _rules(self) -> list[dict[str, str]]:
        return self.subject_rules if self.subject_rules is not None else DEFAULT_SUBJECT_RULES

    def fit(self, documents: Sequence[RoutingDocument], correct: np.ndarray, experts: Sequence[str]) -> "TableRouter":
        subjects = [subject_of(d.task, d.doc, self._rules()) for d in documents]
        if any(s is None for s in subjects):
            missing = next(d for d, s in zip(documents, subjects) if s is None)
            raise RecordsError(f"document {missing.key} has no subject field (rules {self._rules()}), and the table "
                               f"router looks each document's subject up at run time; use --router subject or "
                               f"query, which learn the subject (for such tasks: the task) from the text.")
        self.experts_ = list(experts)
        self.table_, accuracy = best_expert_table(subjects, correct, experts)
        self.subjects_ = sorted(self.table_)
        self.metadata_ = {"subject_accuracy": accuracy}
        return self

    @classmethod
    def from_table(cls, table: dict[str, str], experts: Sequence[str] | None = None,
                   subject_rules: list[dict[str, str]] | None = None, metadata: dict[str, Any] | None = None) -> "TableRouter":
        router = cls(subject_rules=subject_rules)
        router.table_ = {normalize_subject(k): v for k, v in table.items()}
        router.experts_ = list(experts) if experts else sorted(set(table.values()))
        router.subjects_ = sorted(router.table_)
        router.metadata_ = dict(metadata or {})
        return router

    def decide(self, documents: Sequence[RoutingDocument]) -> list[RouteDecision]:
        decisions = []
        for document in documents:
            subject = subject_of(document.task, document.doc, self._rules())
            expert = self.table_.get(subject) if subject is not None else None
            decisions.append(RouteDecision(expert, 1.0 if expert else None, subject, "table" if expert else "unknown subject"))
        return decisions
