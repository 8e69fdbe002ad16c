"""Nearest-neighbour expert accuracy: for each question, every expert's hits among the ``k`` most
similar fit questions (dot product of L2-normalised sentence embeddings, i.e. cosine), shrunk
toward the expert's accuracy over all fit questions with the weight of ``shrink`` questions."""

from __future__ import annotations

import numpy as np

from benchcoe_plugins.routers.table import shrunk_rate

SHRINK = 20.0


def neighbour_accuracy(vectors: np.ndarray, fit_vectors: np.ndarray, fit_hits: np.ndarray, k: int,
                       shrink: float = SHRINK, batch: int = 1024, leave_one_out: bool = False) -> np.ndarray:
    """(len(vectors), n_experts) float32: (hits among the k nearest + shrink x accuracy) / (k + shrink).

    ``leave_one_out``: ``vectors`` are the fit questions themselves, and each one's own row is not
    among its neighbours, so its score is what a question the model did not fit would get."""
    fit_hits = np.asarray(fit_hits, dtype=np.float32)
    k = max(1, min(int(k), len(fit_vectors) - int(leave_one_out)))
    prior = fit_hits.mean(axis=0)
    out = np.empty((len(vectors), fit_hits.shape[1]), dtype=np.float32)
    for start in range(0, len(vectors), batch):
        similarity = vectors[start:start + batch] @ fit_vectors.T
        if leave_one_out:
            rows = np.arange(similarity.shape[0])
            similarity[rows, start + rows] = -np.inf
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        out[start:start + batch] = shrunk_rate(fit_hits[nearest].sum(axis=1), k, prior, shrink)
    return out
