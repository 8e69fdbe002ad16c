"""Probe, not a product feature: a cascade whose first stage is several cheap experts, against the
whole-pool aim of issue 16 (the 70B's held-out accuracy at <= 50 % of its cost).

The shipped cascade (``--router cascade``) has one first expert. Here FIRST_1..FIRST_k all answer every
question; per question the probe keeps the answer of the first expert most likely right, or escalates
to the 70B. Features: the question's TF-IDF (question + options), its category and ``src``, the four
answer features of each first expert (``routers/cascade.py``: ``answer_features``) and, per pair of
first experts, whether they extracted the same answer. One logistic head per expert (P(right)), C
chosen by 5-fold cross-validation of the fit part (the setting whose out-of-fold escalation order
recovers the most accuracy over every escalated share, as the shipped cascade chooses it). Cost =
parameters, the first experts paid on every question. Random 60 / 10 / 30 split by seed as
``benchcoe train``; fit on the 70 %, every figure on the 3,610 test questions.

    python benchmarks/cascade_pool_probe.py --json benchmarks/results/cascade_pool_probe.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.special import expit

from benchcoe_plugins.routers.cascade import C_GRID, DEFAULT_ANSWER_PATTERN, answer_features, recovered_area
from benchcoe_plugins.routers.cost import parameter_counts
from benchcoe_plugins.routers.encoders import TfidfEncoder
from benchcoe_plugins.routers.guard import cross_validation_splits
from benchcoe_plugins.routers.subject import LinearHead, document_texts
from benchcoe_plugins.training.dataset import fit_and_test_indices
from benchcoe_plugins.training.outputs import record_outputs
from benchcoe_plugins.training.records import load_mmlu_pro

REPO = Path(__file__).resolve().parents[1]
STRONG = "Meta-Llama-3_1-70B"
FIRSTS = ["Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct", "mathstral-7B"]


def one_hot(values: list[str], known: list[str]) -> sparse.csr_matrix:
    index = {v: i for i, v in enumerate(known)}
    rows = [i for i, v in enumerate(values) if v in index]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, [index[values[i]] for i in rows])),
                             shape=(len(values), len(known)))


def features(documents, outputs: list[list[str]], fit: np.ndarray, test: np.ndarray):
    """Feature matrices of the fit and test rows, every map fitted on the fit rows only."""
    texts = document_texts(documents, "question+options")
    tfidf = TfidfEncoder().fit([texts[i] for i in fit])
    answers = np.hstack([answer_features(o, DEFAULT_ANSWER_PATTERN) for o in outputs])
    pattern = re.compile(DEFAULT_ANSWER_PATTERN)
    letters = [[(pattern.findall(t) or [""])[0] for t in o] for o in outputs]
    agree = np.array([[a == b != "" for a, b in zip(letters[i], letters[j])]
                      for i, j in itertools.combinations(range(len(outputs)), 2)], dtype=float).T.reshape(len(documents), -1)
    dense = np.hstack([answers, agree])
    dense = (dense - dense[fit].mean(axis=0)) / np.where(dense[fit].std(axis=0) > 0, dense[fit].std(axis=0), 1.0)
    fields = [[f"category={d.doc.get('category')}", f"src={d.doc.get('src')}"] for d in documents]
    known = sorted({name for i in fit for name in fields[i]})
    categorical = one_hot([f[0] for f in fields], known) + one_hot([f[1] for f in fields], known)
    matrix = sparse.hstack([tfidf.transform(texts), categorical, sparse.csr_matrix(dense)], format="csr")
    return matrix[fit], matrix[test]


def choices(proba: np.ndarray, threshold: float) -> np.ndarray:
    """The first expert most likely right, or the strong one (last column) where its gain exceeds ``threshold``."""
    best_first = proba[:, :-1].argmax(axis=1)
    gain = proba[:, -1] - proba[np.arange(len(proba)), best_first]
    return np.where(gain > threshold, proba.shape[1] - 1, best_first)


def escalation_area(proba: np.ndarray, correct: np.ndarray) -> float:
    """The shipped cascade's criterion, with the kept answer that of the first expert most likely right."""
    best_first = proba[:, :-1].argmax(axis=1)
    rows = np.arange(len(correct))
    return recovered_area(proba[:, -1] - proba[rows, best_first], correct[rows, best_first], correct[:, -1])


def run_seed(data, outputs, costs: np.ndarray, seed: int) -> dict:
    fit, test = fit_and_test_indices(len(data), seed)
    correct = data.correct
    proba = {c: np.zeros((len(fit), correct.shape[1])) for c in C_GRID}
    for inside, fold in cross_validation_splits(len(fit), 5, seed):
        x_in, x_fold = features(data.documents, outputs, fit[inside], fit[fold])
        for c in C_GRID:
            proba[c][fold] = expit(LinearHead.fit_binary_columns(x_in, correct[fit[inside]], c).logits(x_fold))
    areas = {c: escalation_area(p, correct[fit]) for c, p in proba.items()}
    chosen = max(C_GRID, key=lambda c: (areas[c], -c))
    x_fit, x_test = features(data.documents, outputs, fit, test)
    proba = expit(LinearHead.fit_binary_columns(x_fit, correct[fit], chosen).logits(x_test))
    held = correct[test]
    strong = held[:, -1].mean()
    base, strong_cost = float(costs[:-1].sum()), float(costs[-1])
    gains = proba[:, -1] - proba[np.arange(len(proba)), proba[:, :-1].argmax(axis=1)]
    points = []
    for threshold in np.concatenate([[np.inf], np.sort(gains)[::-1] - 1e-12]):
        picked = choices(proba, threshold)
        share = float((picked == held.shape[1] - 1).mean())
        points.append({"share": share, "cost": base + share * strong_cost,
                       "accuracy": float(held[np.arange(len(held)), picked].mean())})
    within = [p for p in points if p["cost"] <= 0.5 * strong_cost]
    reaching = [p["cost"] for p in points if p["accuracy"] >= strong]
    return {"seed": seed, "C": chosen, "strong_accuracy": float(strong), "first_stage_cost": base,
            "best_accuracy_within_half_cost": max(p["accuracy"] for p in within) if within else None,
            "lowest_cost_reaching_strong": min(reaching) / strong_cost if reaching else None,
            "first_alone": {name: float(held[:, i].mean()) for i, name in enumerate(data.experts[:-1])}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=REPO.parent / "shared" / "data" / "mmlu_pro")
    parser.add_argument("--firsts", nargs="+", default=FIRSTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = load_mmlu_pro(args.records, [*args.firsts, STRONG])
    outputs = [record_outputs(args.records, name, data) for name in args.firsts]
    counts = parameter_counts()
    costs = np.array([counts[name] for name in data.experts])
    rows = [run_seed(data, outputs, costs, seed) for seed in args.seeds]
    print(f"first stage {args.firsts} (cost {costs[:-1].sum():g} = {costs[:-1].sum() / costs[-1]:.1%} of the 70B)")
    print("seed | C | 70B accuracy | best accuracy at <= 50 % of the 70B's cost | lowest cost reaching the 70B")
    for r in rows:
        best, reach = r["best_accuracy_within_half_cost"], r["lowest_cost_reaching_strong"]
        print(f"{r['seed']} | {r['C']} | {r['strong_accuracy']:.4f} | {'-' if best is None else f'{best:.4f}'} | "
              f"{'not reached' if reach is None else f'{reach:.1%}'}")
    if args.json:
        args.json.write_text(json.dumps({"firsts": args.firsts, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
