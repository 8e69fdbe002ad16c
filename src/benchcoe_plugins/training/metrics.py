"""Router accuracy, baselines and RouterEval's metrics on held-out documents.

Baselines: best single expert (chosen on the training split), random router (expected
accuracy of a uniformly random expert), oracle (any expert right), and the table router
with the TRUE subject (table from the training split).

RouterEval metrics: mu_o = router / oracle, V_R = router / random, V_B = router / best
single, E_p = entropy (natural log) of the routed-expert distribution (0 = one expert).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.routers.table import best_expert_table, best_single_index


def routing_entropy(choices: Sequence[str]) -> float:
    counts = np.array(list(Counter(choices).values()), dtype=float)
    if not len(counts):
        return 0.0
    p = counts / counts.sum()
    return max(0.0, float(-(p * np.log(p)).sum()))  # no -0.0 for a single expert


def accuracy_of(correct: np.ndarray, experts: Sequence[str], choices: Sequence[str | None],
                fallback: str | None = None) -> np.ndarray:
    """Per-document 0/1 of the chosen expert (None -> ``fallback``, else counted wrong)."""
    index = {e: i for i, e in enumerate(experts)}
    unknown = sorted({c for c in choices if c is not None and c not in index})
    if unknown:
        raise RecordsError(f"the router chose experts {unknown} that have no results; known: {list(experts)}.")
    out = np.zeros(len(choices), dtype=float)
    for row, choice in enumerate(choices):
        choice = choice if choice is not None else fallback
        if choice is not None:
            out[row] = correct[row, index[choice]]
    return out


def paired_difference(hits: np.ndarray, reference_hits: np.ndarray, resamples: int = 2000,
                      seed: int = 0) -> dict[str, float | int]:
    """Mean per-document difference ``hits - reference_hits`` (same documents), its standard
    error and a percentile-bootstrap 95 % interval (``resamples`` resamples of documents, by ``seed``)."""
    difference = np.asarray(hits, dtype=float) - np.asarray(reference_hits, dtype=float)
    n = len(difference)
    if not n:
        return {"documents": 0, "difference": 0.0, "standard_error": 0.0, "ci95": [0.0, 0.0]}
    stderr = float(difference.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = difference[draws].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"documents": n, "difference": round(float(difference.mean()), 6), "standard_error": round(stderr, 6),
            "ci95": [round(float(low), 6), round(float(high), 6)]}


def baselines(train_correct: np.ndarray, train_subjects: Sequence[str | None], test_correct: np.ndarray,
              test_subjects: Sequence[str | None], experts: Sequence[str]) -> dict[str, Any]:
    best_index = best_single_index(train_correct)
    out: dict[str, Any] = {
        "best_single": {"expert": experts[best_index], "accuracy": float(test_correct[:, best_index].mean()),
                        "column": best_index},
        "random": {"accuracy": float(test_correct.mean())},
        "oracle": {"accuracy": float(test_correct.max(axis=1).mean())},
    }
    if all(train_subjects) and all(test_subjects):
        table, _ = best_expert_table(train_subjects, train_correct, experts)
        choices = [table.get(s, experts[best_index]) for s in test_subjects]
        out["table_true_subject"] = {"accuracy": float(accuracy_of(test_correct, experts, choices).mean()), "table": table}
    return out


def evaluate_routing(test_correct: np.ndarray, test_subjects: Sequence[str | None], experts: Sequence[str],
                     choices: Sequence[str | None], base: dict[str, Any], fallback: str | None = None) -> dict[str, Any]:
    """Router accuracy, RouterEval metrics, routing distribution and the per-subject table."""
    if not len(choices):
        raise RecordsError("no held-out documents to evaluate on.")
    hits = accuracy_of(test_correct, experts, choices, fallback)
    accuracy = float(hits.mean())

    def ratio(value: float) -> float | None:
        return round(accuracy / value, 6) if value > 0 else None

    routed = [c if c is not None else (fallback or "(none)") for c in choices]
    best_column = base["best_single"].get("column", list(experts).index(base["best_single"]["expert"]))
    best_hits = test_correct[:, best_column]
    per_subject: dict[str, Any] = {}
    subjects = np.array([s or "(none)" for s in test_subjects])
    for subject in sorted(set(subjects.tolist())):
        mask = subjects == subject
        per_subject[subject] = {
            "documents": int(mask.sum()),
            "router": round(float(hits[mask].mean()), 6),
            "experts": {e: round(float(test_correct[mask, i].mean()), 6) for i, e in enumerate(experts)},
            "oracle": round(float(test_correct[mask].max(axis=1).mean()), 6),
            "routed": dict(Counter(np.array(routed)[mask].tolist())),
            "best_single": round(float(best_hits[mask].mean()), 6),
            "router_minus_best_single": paired_difference(hits[mask], best_hits[mask]),
        }
    counts = Counter(routed)
    return {
        "documents": len(choices),
        "accuracy": round(accuracy, 6),
        "baselines": {k: {**{f: x for f, x in v.items() if f != "column"}, "accuracy": round(v["accuracy"], 6)}
                      for k, v in base.items()},
        "router_minus_best_single": paired_difference(hits, best_hits),
        "mu_o": ratio(base["oracle"]["accuracy"]),
        "V_R": ratio(base["random"]["accuracy"]),
        "V_B": ratio(base["best_single"]["accuracy"]),
        "E_p": round(routing_entropy(routed), 6),
        "E_p_max": round(math.log(len(experts)), 6),
        "routing_distribution": {e: counts.get(e, 0) for e in experts},
        "per_subject": per_subject,
    }
