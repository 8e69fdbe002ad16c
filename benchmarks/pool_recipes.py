"""Recipes for many candidates, scored on the same TF-IDF features and per-expert logistic heads
of the query router: 5-fold out-of-fold accuracy over train + validation ("cv", what a choice may
use) and accuracy on the held-out 30 % ("test"), for a nested pool of benchmarks/pool_sizes.py.

    python benchmarks/pool_recipes.py SIZE SEED      # e.g. 11 0 (about 22 min on 2 loaded cores)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_sizes import POOL_ORDER, RECORDS  # noqa: E402

NEIGHBOURS = 50
BLENDS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
NEIGHBOUR_PRIOR_WEIGHTS = (5.0, 20.0)
SWITCH_MARGINS = (0.0, 0.05, 0.1)


def recipe_scores(experts: Sequence[str], seed: int, train_documents: list, train_correct: np.ndarray,
                  train_subjects: list[str], documents: list) -> dict[str, np.ndarray]:
    """Per recipe, a score per (document, expert) from models fitted on the training documents."""
    from benchcoe_plugins.routers.query import QueryRouter
    from benchcoe_plugins.routers.subject import document_texts

    router = QueryRouter(text="question+options", seed=seed, progress=False, blend=1.0, margin=0.0)
    router.experts_ = list(experts)
    router._fit_models(train_documents, train_correct, train_subjects)
    proba, prior, _ = router._parts(documents)
    train_features = router.features_.transform(document_texts(train_documents, router.text))
    features = router.features_.transform(document_texts(documents, router.text))
    similarity = features @ train_features.T
    similarity = similarity.toarray() if hasattr(similarity, "toarray") else similarity
    nearest = np.argsort(-similarity, axis=1)[:, :NEIGHBOURS]
    neighbour_hits = train_correct[nearest].sum(axis=1)
    scores = {f"blend{b}": b * proba + (1 - b) * prior for b in BLENDS}
    for weight in NEIGHBOUR_PRIOR_WEIGHTS:
        smoothed = (neighbour_hits + weight * prior) / (NEIGHBOURS + weight)
        scores[f"knn{NEIGHBOURS}_a{weight}"] = smoothed
        scores[f"knn{NEIGHBOURS}_a{weight}+proba"] = 0.5 * smoothed + 0.5 * proba
    best = int(np.argmax(train_correct.mean(axis=0)))
    gap = proba - proba[:, [best]]  # switch from the best single only when clearly better
    for margin in SWITCH_MARGINS:
        bonus = np.zeros_like(proba)
        bonus[:, best] = margin
        scores[f"pairwise_t{margin}"] = gap + bonus
    return scores


def main() -> None:
    from benchcoe_plugins.routers.guard import cross_validation_splits
    from benchcoe_plugins.training.dataset import parts_subset, split_indices
    from benchcoe_plugins.training.records import load_mmlu_pro

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", type=int, help="the first SIZE models of pool_sizes.POOL_ORDER")
    parser.add_argument("seed", type=int)
    args = parser.parse_args()
    data = load_mmlu_pro(RECORDS, POOL_ORDER[:args.size])
    indices = split_indices(len(data), args.seed)
    fit, test = parts_subset(data, indices, ["train", "validation"]), data.subset(indices["test"])
    started = time.time()
    out_of_fold: dict[str, np.ndarray] = {}
    for inside, fold in cross_validation_splits(len(fit), 5, args.seed):
        fold_scores = recipe_scores(data.experts, args.seed, [fit.documents[i] for i in inside], fit.correct[inside],
                                    [fit.subjects[i] for i in inside], [fit.documents[i] for i in fold])
        for name, score in fold_scores.items():
            out_of_fold.setdefault(name, np.zeros((len(fit), args.size)))[fold] = score
    cv = {name: fit.correct[np.arange(len(fit)), score.argmax(axis=1)].mean() for name, score in out_of_fold.items()}
    test_scores = recipe_scores(data.experts, args.seed, fit.documents, fit.correct, fit.subjects, test.documents)
    best = np.argmax(fit.correct.mean(axis=0))
    print(f"size {args.size} seed {args.seed} best single test {test.correct[:, best].mean():.4f} "
          f"cv {fit.correct[:, best].mean():.4f} oracle {test.correct.max(axis=1).mean():.4f} "
          f"({time.time() - started:.0f}s)")
    for name in out_of_fold:
        accuracy = test.correct[np.arange(len(test)), test_scores[name].argmax(axis=1)].mean()
        print(f"  {name:22s} cv {cv[name]:.4f}  test {accuracy:.4f}")
    print("  chosen on cv:", max(cv, key=cv.get))


if __name__ == "__main__":
    main()
