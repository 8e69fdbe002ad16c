"""Recipes for many candidates, scored on the same TF-IDF features and per-expert logistic heads
of the query router: 5-fold out-of-fold accuracy over train + validation ("cv", what a choice may
use) and accuracy on the held-out 30 % ("test"), for a nested pool of benchmarks/pool_sizes.py.

    python benchmarks/pool_recipes.py SIZE SEED      # e.g. 11 0 (about 22 min on 2 loaded cores)
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_sizes import POOL_ORDER, RECORDS  # noqa: E402
from benchcoe_plugins.routers.query import QueryRouter
from benchcoe_plugins.routers.guard import cross_validation_splits
from benchcoe_plugins.routers.subject import document_texts
from benchcoe_plugins.training.dataset import parts_subset, split_indices
from benchcoe_plugins.training.records import load_mmlu_pro
size, seed = int(sys.argv[1]), int(sys.argv[2])
data = load_mmlu_pro(RECORDS, POOL_ORDER[:size])
idx = split_indices(len(data), seed, 0.3, 0.1)
fit = parts_subset(data, idx, ["train", "validation"]); test = data.subset(idx["test"])
def parts(train_docs, train_correct, train_subj, docs):
    r = QueryRouter(text="question+options", seed=seed, progress=False, blend=1.0, margin=0.0)
    r.experts_ = list(data.experts); r._fit_models(train_docs, train_correct, train_subj)
    proba, prior, pick = r._parts(docs)
    Xtr = r.features_.transform(document_texts(train_docs, r.text)); Xte = r.features_.transform(document_texts(docs, r.text))
    sim = (Xte @ Xtr.T).toarray() if hasattr(Xte, "toarray") else Xte @ Xtr.T
    if hasattr(sim, "toarray"): sim = sim.toarray()
    out = {}
    top = np.argsort(-sim, axis=1)[:, :50]
    knn = train_correct[top].sum(axis=1)
    for b in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        out[f"blend{b}"] = b * proba + (1 - b) * prior
    for a in (5.0, 20.0):
        out[f"knn50_a{a}"] = (knn + a * prior) / (50 + a)
        out[f"knn50_a{a}+proba"] = 0.5 * out[f"knn50_a{a}"] + 0.5 * proba
    best = np.argmax(train_correct.mean(0))
    gap = proba - proba[:, [best]]   # pairwise: switch from the best single only when clearly better
    for t in (0.0, 0.05, 0.1):
        s = np.zeros_like(proba); s[:, best] = t; out[f"pairwise_t{t}"] = gap + s
    return out
t0 = time.time()
n = len(fit); oof = {}
for inside, fold in cross_validation_splits(n, 5, seed):
    sc = parts([fit.documents[i] for i in inside], fit.correct[inside], [fit.subjects[i] for i in inside], [fit.documents[i] for i in fold])
    for k, v in sc.items():
        oof.setdefault(k, np.zeros((n, size)))[fold] = v
rows = np.arange(n)
val = {k: fit.correct[rows, v.argmax(1)].mean() for k, v in oof.items()}
sc = parts(fit.documents, fit.correct, fit.subjects, test.documents)
rt = np.arange(len(test)); bestc = np.argmax(fit.correct.mean(0))
print(f"size {size} seed {seed} best single test {test.correct[:, bestc].mean():.4f} cv {fit.correct[:, bestc].mean():.4f} oracle {test.correct.max(1).mean():.4f} ({time.time()-t0:.0f}s)")
for k in oof:
    print(f"  {k:22s} cv {val[k]:.4f}  test {test.correct[rt, sc[k].argmax(1)].mean():.4f}")
print("  chosen on cv:", max(val, key=val.get))
