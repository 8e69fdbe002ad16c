"""Router training time and held-out gain over the best single expert against pool size
(3, 5, 8, 11 MMLU-Pro models of ../shared/data), seeds 0-2.

Nested pools in the order of POOL_ORDER (the shipped five first, then the other six). Each
(pool size, seed, recipe) repeats ``benchcoe train`` on a random split 60 % train / 10 %
validation / 30 % test by seed: the query router with 5-fold cross-validated tuning over train
+ validation (``--tuning cv``), on question + options; recipe ``query`` tunes blend and margin,
``query-m0`` tunes the blend only and never defers (``--margin 0``); ``knn-src-m0`` is ``query-m0``
with ``--head knn --prior-field src`` (set ``BENCHCOE_EMBEDDING_CACHE`` to reuse the MiniLM vectors
between fits; without it each fit encodes its questions again). The best single expert is
chosen on train + validation; every figure is on the test part, with the paired bootstrap 95 %
interval of router - best single. Training time = the router's ``fit`` (wall clock, in the
worker; load the records and evaluation not counted).

    python benchmarks/pool_sizes.py [--sizes 3 5 8 11] [--seeds 0 1 2] [--recipes query-m0] [--workers 1]
                                    [--plot benchmarks/results/pool_sizes.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchcoe_plugins.training.train_cli import positive_int

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO.parent / "shared" / "data" / "mmlu_pro"
POOL_ORDER = ["Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct", "mathstral-7B", "gemma-7b", "Qwen1.5-7B-Chat",
              "Mixtral-8x7B-Instruct-v0.1", "Meta-Llama-3-8B", "Mistral-7B-Instruct-v0.2", "Yi-6b-Chat",
              "Llama-2-13b-hf", "Meta-Llama-3_1-70B"]
RECIPES = {"query": {}, "query-m0": {"margin": 0.0},
           "knn-src-m0": {"margin": 0.0, "head": "knn", "prior_field": "src"}}


def run_one(job: tuple[int, int, str, str]) -> dict:
    from benchcoe_plugins.routers.query import QueryRouter
    from benchcoe_plugins.training.dataset import parts_subset, split_indices
    from benchcoe_plugins.training.evaluate_cli import evaluate_router
    from benchcoe_plugins.training.records import load_mmlu_pro

    size, seed, recipe, records = job
    data = load_mmlu_pro(records, POOL_ORDER[:size])
    indices = split_indices(len(data), seed)
    train, validation, test = (data.subset(indices[n]) for n in ("train", "validation", "test"))
    router = QueryRouter(text="question+options", tuning="cv", seed=seed, progress=False, **RECIPES[recipe])
    started = time.perf_counter()
    router.fit(train.documents, train.correct, train.experts, subjects=train.subjects,
               validation=(validation.documents, validation.correct, validation.subjects))
    seconds = time.perf_counter() - started
    evaluation = evaluate_router(router, parts_subset(data, indices, ["train", "validation"]), test)
    return {"size": size, "seed": seed, "recipe": recipe, "train_seconds": round(seconds, 1),
            "test_documents": len(test), "router": evaluation["accuracy"], "mode": router.mode_,
            "best_single": evaluation["baselines"]["best_single"]["accuracy"],
            "best_expert": evaluation["baselines"]["best_single"]["expert"],
            "oracle": evaluation["baselines"]["oracle"]["accuracy"],
            "gain": evaluation["router_minus_best_single"]}


def plot(results: list[dict], path: Path) -> Path:
    import numpy as np

    from benchcoe_plugins.training.plots import ROLE_COLORS, _pyplot, _save

    plt = _pyplot()
    sizes = sorted({r["size"] for r in results})
    recipes = list(dict.fromkeys(r["recipe"] for r in results))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    markers = "os^D"
    seeds = sorted({r["seed"] for r in results})
    styles = ("-", "--", ":", "-.")  # one line style per seed, one marker per recipe
    for k, recipe in enumerate(recipes):
        for i, seed in enumerate(seeds):
            rows = sorted((r for r in results if r["recipe"] == recipe and r["seed"] == seed), key=lambda r: r["size"])
            x = np.array([r["size"] for r in rows]) + (i - (len(seeds) - 1) / 2) * 0.12 + k * 0.04
            gain = np.array([r["gain"]["difference"] for r in rows]) * 100
            low = gain - np.array([r["gain"]["ci95"][0] for r in rows]) * 100
            high = np.array([r["gain"]["ci95"][1] for r in rows]) * 100 - gain
            style = styles[i % len(styles)]
            left.errorbar(x, gain, yerr=[low, high], fmt=markers[k % 4] + style, color=ROLE_COLORS["router"],
                          capsize=3, markersize=4, label=f"{recipe}, seed {seed}")
            right.plot([r["size"] for r in rows], [r["train_seconds"] for r in rows], markers[k % 4] + style,
                       color=ROLE_COLORS["router"], label=f"{recipe}, seed {seed}")
    oracle = [np.mean([r["oracle"] - r["best_single"] for r in results if r["size"] == s]) * 100 for s in sizes]
    left.axhline(0, color=ROLE_COLORS["best single"], linewidth=1.2, label="best single expert")
    left.set_xticks(sizes)
    left.set_xlabel("experts in the pool")
    left.set_ylabel("router - best single (points, 95 % interval)")
    left.set_title("Held-out gain over the best single expert")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    twin = left.twinx()
    twin.plot(sizes, oracle, "o--", color=ROLE_COLORS["oracle"], label="oracle - best single (right axis)")
    twin.set_ylabel("oracle - best single (points)", color=ROLE_COLORS["oracle"])
    twin.legend(fontsize=7, loc="lower right")
    right.axhline(180, color="black", linestyle=":", linewidth=1, label="3 min")
    right.set_xticks(sizes)
    right.set_xlabel("experts in the pool")
    right.set_ylabel("training seconds (fit)")
    right.set_title("Training time")
    right.set_ylim(0, max(200, max(r["train_seconds"] for r in results) * 1.1))
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    return _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 8, 11])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=["query-m0"], choices=sorted(RECIPES))
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel runs (more than 1 inflates the timings)")
    parser.add_argument("--plot", type=Path, default=Path("pool_sizes.png"), help="PNG; the results go beside it as JSON")
    args = parser.parse_args()
    if not 2 <= min(args.sizes) <= max(args.sizes) <= len(POOL_ORDER):
        parser.error(f"--sizes must lie in 2..{len(POOL_ORDER)}.")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from tqdm.auto import tqdm

    load = os.getloadavg()
    jobs = [(size, seed, recipe, str(args.records)) for recipe in args.recipes for size in args.sizes for seed in args.seeds]
    with ProcessPoolExecutor(args.workers) as executor:
        results = list(tqdm(executor.map(run_one, jobs), total=len(jobs), desc="pool sizes x seeds"))
    print(f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, at end "
          + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs, {args.workers} worker(s))")
    print("| recipe | experts | seed | train s | best single | router | router - best single, points (95 %) | oracle |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        g = r["gain"]
        mark = " (guard: best single)" if r["mode"] == "best" else ""
        print(f"| {r['recipe']} | {r['size']} | {r['seed']} | {r['train_seconds']:.0f} | {r['best_single']:.4f} | "
              f"{r['router']:.4f}{mark} | {g['difference'] * 100:+.2f} [{g['ci95'][0] * 100:+.2f}, "
              f"{g['ci95'][1] * 100:+.2f}] | {r['oracle']:.4f} |")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    args.plot.with_suffix(".json").write_text(json.dumps({"load_average_start": load, "workers": args.workers,
                                                          "results": results}, indent=1) + "\n")
    png = plot(results, args.plot)
    print(f"plot: {png}; results: {args.plot.with_suffix('.json')}")


if __name__ == "__main__":
    main()
