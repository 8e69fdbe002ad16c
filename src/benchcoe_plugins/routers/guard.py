"""The guard of the text routers: route only where held-out evidence shows a clear gain over
the best single expert; otherwise send every question to that expert.

The evidence is per-document hits on documents the deciding model did not train on
(cross-validation folds or the validation split). The gain over the best single expert is
paired per document; the guard passes when its mean exceeds ``guard_z`` standard errors.
When hyper-parameters are chosen on the same documents, :func:`cross_fitted_hits` scores
the *choosing* too (each fold gets the setting chosen on the other folds), so picking the
best of many settings does not inflate the evidence.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """``folds`` disjoint random parts of ``range(n)`` (by ``seed``)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cross_validation_splits(n: int, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(fit indices, held-out indices) for each of the ``folds`` parts of :func:`fold_indices`."""
    for fold in fold_indices(n, folds, seed):
        yield np.setdiff1d(np.arange(n), fold), fold


def cross_fitted_hits(candidate_hits: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Per-document hits of "pick the best candidate": candidate_hits is (n_candidates, n_documents)
    of 0/1; each fold's documents are scored with the candidate that is best on the other folds."""
    candidate_hits = np.asarray(candidate_hits, dtype=float)
    n = candidate_hits.shape[1]
    out = np.zeros(n)
    totals = candidate_hits.sum(axis=1)
    for part in fold_indices(n, min(folds, n), seed):
        chosen = int(np.argmax(totals - candidate_hits[:, part].sum(axis=1)))
        out[part] = candidate_hits[chosen, part]
    return out


def guard_verdict(routed_hits: np.ndarray, best_single_hits: np.ndarray, guard_z: float) -> dict[str, Any]:
    """Whether routing clearly beats the best single expert on these held-out hits."""
    gain = np.asarray(routed_hits, dtype=float) - np.asarray(best_single_hits, dtype=float)
    mean = float(gain.mean()) if len(gain) else 0.0
    stderr = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
    return {"routes": bool(mean > 0 and mean > guard_z * stderr), "held_out_documents": int(len(gain)),
            "gain_over_best_single": round(mean, 6), "gain_standard_error": round(stderr, 6), "guard_z": guard_z}


def guard_evidence(record: dict[str, Any]) -> dict[str, Any]:
    """The guard's verdict in a router's metadata or manifest: at the top level for a subject
    router, under ``tuning`` for a query router (named after how its setting was chosen); {}
    when there is none."""
    if isinstance(record.get("guard"), dict):
        return record["guard"]
    tuning = record.get("tuning") if isinstance(record.get("tuning"), dict) else {}
    if not isinstance(tuning.get("guard"), dict):
        return {}
    return {"method": f"cross-fitted choice of blend / margin, {tuning.get('method', '?')}", **tuning["guard"]}


def guard_note(router: Any) -> str | None:
    """In plain words, why a guarded router sends every question to the best single expert, or why its
    guard was skipped (None when it routes after passing the guard, or has no guard)."""
    verdict = guard_evidence(getattr(router, "metadata_", {}) or {})
    if verdict.get("skipped") and getattr(router, "guard_z", None) is not None:
        return f"The guard was skipped: {verdict['skipped']}. The router routes without it."
    if getattr(router, "mode_", None) != "best":
        return None
    expert = getattr(router, "best_expert_", "the best single expert")
    if "gain_over_best_single" not in verdict:
        return f"The guard sent every question to {expert}: routing showed no clear gain over it on held-out data."
    gain, stderr, z = verdict["gain_over_best_single"], verdict["gain_standard_error"], verdict["guard_z"]
    return (f"The guard sent every question to the best single expert, {expert}: on "
            f"{verdict['held_out_documents']} training documents, each scored by a model that did not see it, routing gained {gain * 100:+.2f} points "
            f"(standard error {stderr * 100:.2f}), not more than {z:g} standard error(s), so routing was not "
            f"clearly better than always answering with {expert} (--guard-z sets the bar; --no-guard turns it off).")
