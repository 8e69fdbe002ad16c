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
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

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
    from benchcoe_plugins.routers.query import QueryRouter
    from benchcoe_plugins.routers.subject import SubjectRouter
    from benchcoe_plugins.training.dataset import parts_subset, split_indices
    from benchcoe_plugins.training.evaluate_cli import evaluate_router
    from benchcoe_plugins.training.records import load_mmlu_pro

    experts, seed, records = job
    data = load_mmlu_pro(records, experts)
    indices = split_indices(len(data), seed, 0.3, 0.1)
    train, validation, test = (data.subset(indices[n]) for n in ("train", "validation", "test"))
    fit = parts_subset(data, indices, ["train", "validation"])
    subject = SubjectRouter(text="question+options", seed=seed, progress=False)
    subject.fit(fit.documents, fit.correct, fit.experts, subjects=fit.subjects)
    query = QueryRouter(text="question+options", tuning="cv", seed=seed, progress=False)
    query.fit(train.documents, train.correct, train.experts, subjects=train.subjects,
              validation=(validation.documents, validation.correct, validation.subjects))
    out = {"pool": experts, "seed": seed, "test_documents": len(test)}
    for name, router in (("subject", subject), ("query", query)):
        evaluation = evaluate_router(router, fit, test)
        out[name] = evaluation["accuracy"]
        out[f"{name}_mode"] = router.mode_
        out["best_single"] = evaluation["baselines"]["best_single"]["accuracy"]
        out["oracle"] = evaluation["baselines"]["oracle"]["accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pools", type=int, nargs="+", help="indices into POOLS (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=Path("router_pools.png"), help="PNG; the results go beside it as JSON")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from tqdm.auto import tqdm

    from benchcoe_plugins.training.plots import grouped_bars

    pools = [POOLS[i] for i in args.pools] if args.pools else POOLS
    jobs = [(pool, seed, str(args.records)) for pool in pools for seed in args.seeds]
    with ProcessPoolExecutor(args.workers) as executor:
        results = list(tqdm(executor.map(run_one, jobs), total=len(jobs), desc="pools x seeds"))
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
    args.plot.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"plot: {args.plot}; results: {args.plot.with_suffix('.json')}")


if __name__ == "__main__":
    main()
