"""Routers on many expert pools: held-out accuracy of the subject and query routers against the
best single expert, per pool and seed, from the real MMLU-Pro records in ../shared/data.

Each (pool, seed) repeats what ``benchcoe train`` does for the shipped routers: random split
60 % train / 10 % validation / 30 % test by seed; subject router: TF-IDF classifier on question
+ options, fitted on train + validation; query router: 5-fold cross-validation over train +
validation, then fitted on all of it; both with the default guard. The best single expert is
chosen on train + validation; every figure is on the test part.

    python benchmarks/router_pools.py [--seeds 0 1 2] [--workers 2] [--plot router_pools.png]

16-18 minutes with two workers on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _pools import add_pool_arguments, check_pool_indices, fit_shipped_recipe, run_pool_jobs

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO.parent / "shared" / "data" / "mmlu_pro"

SHORT = {"Meta-Llama-3_1-8B-Instruct": "L3.1-I", "Meta-Llama-3-8B": "L3", "Llama-2-13b-hf": "L2-13",
         "Mistral-7B-Instruct-v0.2": "Mis", "Mixtral-8x7B-Instruct-v0.1": "Mix", "Phi-3-mini-4k-instruct": "Phi3",
         "Qwen1.5-7B-Chat": "Qw1.5", "Yi-6b-Chat": "Yi", "gemma-7b": "gem", "mathstral-7B": "math"}
POOLS = [
    ["Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct", "mathstral-7B", "gemma-7b", "Qwen1.5-7B-Chat"],
    ["Meta-Llama-3-8B", "Mistral-7B-Instruct-v0.2", "Yi-6b-Chat"],
    ["Phi-3-mini-4k-instruct", "mathstral-7B", "Mixtral-8x7B-Instruct-v0.1"],
    ["Mixtral-8x7B-Instruct-v0.1", "Meta-Llama-3_1-8B-Instruct", "Llama-2-13b-hf", "gemma-7b"],
    ["Llama-2-13b-hf", "gemma-7b", "Qwen1.5-7B-Chat", "Yi-6b-Chat"],
    ["Meta-Llama-3-8B", "Mixtral-8x7B-Instruct-v0.1", "Yi-6b-Chat", "gemma-7b", "Qwen1.5-7B-Chat"],
    ["Phi-3-mini-4k-instruct", "mathstral-7B", "Qwen1.5-7B-Chat", "Yi-6b-Chat", "Mistral-7B-Instruct-v0.2",
     "Llama-2-13b-hf"],
    ["Meta-Llama-3_1-8B-Instruct", "Mixtral-8x7B-Instruct-v0.1", "Phi-3-mini-4k-instruct", "mathstral-7B",
     "Meta-Llama-3-8B", "Mistral-7B-Instruct-v0.2"],
]


def run_one(job: tuple[list[str], int, str]) -> dict:
    from benchcoe_plugins.training.evaluate_cli import evaluate_router
    from benchcoe_plugins.training.records import load_mmlu_pro

    experts, seed, records = job
    parts = fit_shipped_recipe(load_mmlu_pro(records, experts), seed)
    fit, test, subject, query = (parts[k] for k in ("fit", "test", "subject", "query"))
    out = {"pool": experts, "seed": seed, "test_documents": len(test)}
    for name, router in (("subject", subject), ("query", query)):
        evaluation = evaluate_router(router, fit, test)
        out[name] = evaluation["accuracy"]
        out[f"{name}_mode"] = router.mode_
        out["best_single"] = evaluation["baselines"]["best_single"]["accuracy"]
        out["oracle"] = evaluation["baselines"]["oracle"]["accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pool_arguments(parser, RECORDS, "router_pools.png")
    parser.add_argument("--replot", type=Path, default=None,
                        help="redraw --plot from this results JSON of an earlier run instead of training")
    args = parser.parse_args()
    check_pool_indices(parser, args, POOLS)
    from benchcoe_plugins.training.plots import grouped_bars

    results = json.loads(args.replot.read_text()) if args.replot else run_pool_jobs(run_one, POOLS, args)
    print("| pool | seed | best single | subject router | query router | oracle |")
    print("|---|---:|---:|---:|---:|---:|")
    below = []
    for r in results:
        label = " / ".join(SHORT.get(e, e) for e in r["pool"])
        cells = []
        for name in ("subject", "query"):
            mark = " (guard: best single)" if r[f"{name}_mode"] == "best" else ""
            cells.append(f"{r[name]:.4f}{mark}")
            if r[name] < r["best_single"]:
                below.append(f"{name} router on {label} seed {r['seed']}: {r[name]:.4f} < {r['best_single']:.4f}")
        print(f"| {label} | {r['seed']} | {r['best_single']:.4f} | {cells[0]} | {cells[1]} | {r['oracle']:.4f} |")
    print(f"\n{len(results)} pool x seed runs, test documents per run: {results[0]['test_documents']}")
    print("below the best single expert: " + ("; ".join(below) if below else "none"))
    labels = [f"{' / '.join(SHORT.get(e, e) for e in r['pool'])} s{r['seed']}" for r in results]
    grouped_bars(args.plot, labels, {f"{name} router - best single": [r[name] - r["best_single"] for r in results]
                                     for name in ("subject", "query")},
                 "Held-out gain over the best single expert (MMLU-Pro, 30 % test)", ylabel="accuracy gain", ylim=None, legend_below=False)
    if not args.replot:
        args.plot.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"plot: {args.plot}; results: {args.replot or args.plot.with_suffix('.json')}")


if __name__ == "__main__":
    main()
