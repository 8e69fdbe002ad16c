"""Routers for VLM pools on the real MMMU-Pro records (../shared/data/mmmu_pro): held-out
accuracy of the subject and query routers, each with its paired standard error against the
best single expert, per pool and seed, with the guard at several strengths.

Each (pool, seed) repeats what ``benchcoe train`` does for the shipped routers: random split
70 % (train 60 % + validation 10 %) / 30 % test by seed; subject router: TF-IDF classifier on
question + options -> per-subject table shrunk toward each expert's global accuracy, prior
strength chosen by 5-fold cross-validation over the 70 % (``subject_prior="cv"``), fitted on
the 70 %; "raw table": the same classifier with the unshrunk per-subject argmax (the recipe
before shrinkage); query router (the shipped ``mmmu_pro_query`` recipe: pairwise head, low-margin
questions deferred to the best single expert): 5-fold cross-validation over the 70 %, then fitted
on all of it. The best single expert and the
tables are chosen on the 70 %; every figure is on the 30 % test part. A router is fitted once
per (pool, seed); its guard evidence (cross-validated gain and standard error on the 70 %)
then says whether it would route at each ``--guard-z``: a guarded router that does not route
scores exactly the best single expert.

    python benchmarks/mmmu_pro_routers.py [--seeds 0 1 2] [--workers 2] [--plot mmmu_pro_routers.png] [--all-pools]
        [--query-head pairwise|independent|knn [--neighbours K]] [--defer-to best|subject]
        [--prior-field topic_difficulty|img_type]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from _pools import add_pool_arguments, check_pool_indices, fit_shipped_recipe, run_pool_jobs

from benchcoe_plugins.routers import QUERY_HEADS

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO.parent / "shared" / "data" / "mmmu_pro"
SHORT = {"InternVL2-8B": "IVL-8B", "InternVL2-40B": "IVL-40B", "InternVL2-Llama3-76B": "IVL-76B",
         "llava-onevision-qwen2-7b-vo-hf": "OV-7B", "llava-onevision-qwen2-72b-vo-hf": "OV-72B"}
FIVE = list(SHORT)
POOLS = [
    FIVE,
    ["InternVL2-8B", "InternVL2-40B", "InternVL2-Llama3-76B", "llava-onevision-qwen2-7b-vo-hf"],
    ["InternVL2-40B", "InternVL2-Llama3-76B", "llava-onevision-qwen2-7b-vo-hf", "llava-onevision-qwen2-72b-vo-hf"],
    ["InternVL2-8B", "InternVL2-40B", "InternVL2-Llama3-76B"],
    ["InternVL2-Llama3-76B", "llava-onevision-qwen2-7b-vo-hf", "llava-onevision-qwen2-72b-vo-hf"],
    ["InternVL2-Llama3-76B", "llava-onevision-qwen2-72b-vo-hf"],
    ["InternVL2-8B", "llava-onevision-qwen2-7b-vo-hf"],
    ["InternVL2-40B", "llava-onevision-qwen2-72b-vo-hf"],
]
ALL_POOLS = [list(p) for size in range(2, len(FIVE) + 1) for p in itertools.combinations(FIVE, size)]  # 26
GUARD_ZS = (0.0, 0.5, 1.0)
SUBJECT_PRIOR = "cv"
NAMES = ("subject", "subject_raw", "query")
PLOT_LABELS = {"subject": "subject-level, shrunk table (CV prior)", "subject_raw": "subject-level, raw table",
               "query": "query-level"}


def paired(hits: np.ndarray, best: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the per-document difference (hits - best single)."""
    gain = np.asarray(hits, dtype=float) - np.asarray(best, dtype=float)
    return float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(len(gain)))


def run_one(job: tuple[list[str], int, str]) -> dict:
    from benchcoe_plugins.routers.table import best_expert_table
    from benchcoe_plugins.training.evaluate_cli import evaluate_router
    from benchcoe_plugins.training.records import load_mmmu_pro

    experts, seed, records, query_head, defer_to, neighbours, prior_field = job
    # guard_z=0 records the guard's evidence; whether it routes at a stronger z is decided below
    parts = fit_shipped_recipe(load_mmmu_pro(records, experts), seed, guard_z=0.0, subject_prior=SUBJECT_PRIOR,
                               query_head=query_head, defer_to=defer_to, neighbours=neighbours,
                               prior_field=prior_field)
    fit, test, subject, query = (parts[k] for k in ("fit", "test", "subject", "query"))
    out: dict = {"pool": experts, "seed": seed, "test_documents": len(test)}
    for name, router, evidence, routing_mode in (("subject", subject, subject.metadata_["guard"], "subject"),
                                                 ("query", query, query.metadata_["tuning"]["guard"], "query")):
        router.mode_ = routing_mode  # the unguarded router's own choices
        evaluation = evaluate_router(router, fit, test)
        base = evaluation["baselines"]
        best_column = test.experts.index(base["best_single"]["expert"])
        column = {e: i for i, e in enumerate(test.experts)}
        hits = test.correct[np.arange(len(test)), [column[e] for e in router.predict(test.documents)]]
        gain, stderr = paired(hits, test.correct[:, best_column])
        out[name] = {"unguarded": float(hits.mean()), "gain": gain, "gain_se": stderr,
                     "cv_gain": evidence["gain_over_best_single"], "cv_se": evidence["gain_standard_error"]}
        out["best_single"] = base["best_single"]["accuracy"]
        out["best_expert"] = base["best_single"]["expert"]
        out["random"] = base["random"]["accuracy"]
        out["oracle"] = base["oracle"]["accuracy"]
        table_choices = base["table_true_subject"]
        out["table_true_subject"] = table_choices["accuracy"]
        table_hits = test.correct[np.arange(len(test)), [column[table_choices["table"].get(s, out["best_expert"])]
                                                        for s in test.subjects]]
        out["table_gain_se"] = paired(table_hits, test.correct[:, best_column])[1]
    raw_table, _ = best_expert_table(fit.subjects, fit.correct, fit.experts)
    raw_hits = test.correct[np.arange(len(test)), [column[raw_table[s]] for s in subject._predicted_subjects(test.documents)]]
    gain, stderr = paired(raw_hits, test.correct[:, best_column])
    out["subject_raw"] = {"unguarded": float(raw_hits.mean()), "gain": gain, "gain_se": stderr}
    out["subject"]["prior"] = subject.metadata_.get("subject_prior_cv", {}).get("chosen", subject.subject_prior)
    return out


def guarded(result: dict, name: str, z: float) -> tuple[float, bool]:
    """(held-out accuracy, routes) of the router guarded at ``z``."""
    r = result[name]
    routes = r["cv_gain"] > 0 and r["cv_gain"] > z * r["cv_se"]
    return (r["unguarded"] if routes else result["best_single"]), routes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pool_arguments(parser, RECORDS, "mmmu_pro_routers.png")
    parser.add_argument("--query-head", choices=QUERY_HEADS, default="pairwise",
                        help="query router's head (default: the shipped recipe's)")
    parser.add_argument("--defer-to", choices=("subject", "best"), default="best",
                        help="where the query router sends low-margin questions (default: the shipped recipe's)")
    parser.add_argument("--neighbours", type=int, default=400, help="--query-head knn: how many")
    parser.add_argument("--all-pools", action="store_true",
                        help="every pool of 2-5 of the five VLMs (26) instead of the 8 of POOLS; --pools indexes them")
    parser.add_argument("--prior-field", help="query router's prior from this document field (benchcoe train "
                        "--prior-field), e.g. topic_difficulty or img_type")
    args = parser.parse_args()
    from benchcoe_plugins.training.plots import grouped_bars

    pools = ALL_POOLS if args.all_pools else POOLS
    check_pool_indices(parser, args, pools)
    results = run_pool_jobs(run_one, pools, args, args.query_head, args.defer_to, args.neighbours,
                            args.prior_field)

    def label(r: dict) -> str:
        return " / ".join(SHORT.get(e, e) for e in r["pool"])

    print("Per pool and seed, held-out accuracy; gain over the best single expert +- its paired standard error")
    print("| pool | seed | best single | random | oracle | table, true subject | subject router (no guard) "
          "| subject router, raw table (no guard) | query router (no guard) | " + " | ".join(f"subject / query, guard z={z:g}" for z in GUARD_ZS) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(GUARD_ZS))
    below = {z: [] for z in GUARD_ZS}
    for r in results:
        cells = []
        for z in GUARD_ZS:
            pair = []
            for name in ("subject", "query"):
                accuracy, routes = guarded(r, name, z)
                pair.append(f"{accuracy:.4f}" if routes else "=")
                if accuracy < r["best_single"] - 1e-6:  # best_single is stored to 6 digits
                    below[z].append(f"{name} on {label(r)} seed {r['seed']}: {accuracy:.4f} < {r['best_single']:.4f}")
            cells.append(" / ".join(pair))
        unguarded = [f"{r[n]['unguarded']:.4f} ({r[n]['gain']:+.4f} +- {r[n]['gain_se']:.4f})"
                     for n in ("subject", "subject_raw", "query")]
        unguarded[0] += f", prior {r['subject']['prior']:g}"
        print(f"| {label(r)} | {r['seed']} | {r['best_single']:.4f} ({SHORT.get(r['best_expert'], r['best_expert'])}) "
              f"| {r['random']:.4f} | {r['oracle']:.4f} | {r['table_true_subject']:.4f} | {' | '.join(unguarded)} | "
              + " | ".join(cells) + " |")
    print("('=': the guard sends every question to the best single expert)")
    for pool in [p for i, p in enumerate(pools) if not args.pools or i in args.pools]:
        rows = [r for r in results if r["pool"] == pool]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("best_single", "random", "oracle", "table_true_subject")}
        line = ", ".join(f"{k} {v:.4f}" for k, v in mean.items())
        for name in ("subject", "subject_raw", "query"):
            line += (f", {name} unguarded {np.mean([r[name]['unguarded'] for r in rows]):.4f} "
                     f"(gain {np.mean([r[name]['gain'] for r in rows]):+.4f} +- "
                     f"{np.sqrt(np.sum([r[name]['gain_se'] ** 2 for r in rows])) / len(rows):.4f})")
            for z in GUARD_ZS if name != "subject_raw" else ():
                line += f", {name} z={z:g} {np.mean([guarded(r, name, z)[0] for r in rows]):.4f}"
        print(f"mean over seeds {[r['seed'] for r in rows]}, {label(rows[0])}: {line}")
    for z in GUARD_ZS:
        print(f"guard z={z:g}: below the best single expert: " + ("; ".join(below[z]) if below[z] else "none"))
    plot_labels = {**PLOT_LABELS, "query": f"query-level ({args.query_head} head, low margin -> {args.defer_to})"}
    # one group per run; with --all-pools (78 runs) one per pool, the mean of its seeds (their SEs combined)
    groups = ([[r for r in results if r["pool"] == pool] for pool in pools if any(r["pool"] == pool for r in results)]
              if args.all_pools else [[r] for r in results])
    labels = [label(rows[0]) + ("" if args.all_pools else f" s{rows[0]['seed']}") for rows in groups]
    seeds = "mean of seeds, " if args.all_pools else ""
    grouped_bars(args.plot, labels,
                 {plot_labels[name]: [float(np.mean([r[name]["gain"] for r in rows])) for rows in groups]
                  for name in NAMES},
                 f"MMMU-Pro held-out gain over the best single expert (30 % test, no guard, {seeds}+- paired standard error)",
                 ylabel="accuracy gain", ylim=None, legend_below=False,
                 errors={plot_labels[name]: [float(np.sqrt(sum(r[name]["gain_se"] ** 2 for r in rows)) / len(rows))
                                             for rows in groups] for name in NAMES})
    args.plot.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"plot: {args.plot}; results: {args.plot.with_suffix('.json')}")


if __name__ == "__main__":
    main()
