"""The cascade router (``benchcoe train --router cascade``) on the real MMLU-Pro records, seeds 0-2.

Two experts, Meta-Llama-3_1-8B-Instruct (first, answers every question) -> Meta-Llama-3_1-70B
(second); random 60 / 10 / 30 split by seed as ``benchcoe train`` makes it; the cascade fits on
the 70 % (its C chosen by 5-fold cross-validation there) and every figure is on the 30 % test
part, from ``benchcoe evaluate``'s cost curve (cost = parameter count; the 8B is paid on every
question). Prints, per seed: accuracy and escalated share at cost weight 0, APGR, CPT(50 %),
CPT(80 %), the mean cost per question at CPT(50 %), whether every calibrated budget held, and the
training time; writes the JSON and a plot of the three curves.

    python benchmarks/cascade.py --json benchmarks/results/cascade.json --plot benchmarks/results/cascade.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST, SECOND = "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B"


def run_seed(records: Path, seed: int, work: Path) -> dict:
    router, report = work / f"cascade_s{seed}", work / f"eval_s{seed}"
    experts = ["--records", str(records), "--experts", FIRST, SECOND]
    costs = REPO / "tasks" / "mmlu_pro" / "parameter_counts.json"
    subprocess.run([sys.executable, "-m", "benchcoe_plugins.cli", "train", *experts, "--router", "cascade",
                    "--seed", str(seed), "--text", "question+options", "--fields", "src", "--costs", str(costs),
                    "--quiet", "--no-plots", "--output", str(router)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "benchcoe_plugins.cli", "evaluate", "--router", str(router), *experts,
                    "--no-plots", "--output", str(report)], check=True, stdout=subprocess.DEVNULL)
    curve = json.loads((report / "cost_curve.json").read_text())
    manifest = json.loads((router / "router.json").read_text())
    at_cpt50 = None
    if curve["CPT_50"] is not None:
        at_cpt50 = curve["costs"][FIRST] + curve["CPT_50"] * curve["costs"][SECOND]
    return {"seed": seed, "test_documents": curve["documents"], "C": manifest["tuning"]["C"],
            "training_seconds": manifest["training_seconds"],
            "accuracy_at_weight_0": curve["accuracy_router"]["accuracy"],
            "escalated_at_weight_0": curve["accuracy_router"]["strong_share"],
            "first_accuracy": curve["singles"][FIRST]["accuracy"], "second_accuracy": curve["singles"][SECOND]["accuracy"],
            "APGR": curve["APGR"], "CPT_50": curve["CPT_50"], "CPT_80": curve["CPT_80"], "cost_at_CPT_50": at_cpt50,
            "cost_to_match_second": curve["cost_to_match_strong"],
            "budgets_held": f"{sum(r.get('holds', False) for r in curve['calibrated_budgets'])} of "
                            f"{len(curve['calibrated_budgets'])}",
            "sweep": [{k: p[k] for k in ("strong_share", "accuracy", "cost")} for p in curve["sweep"]]}


def plot(rows: list[dict], path: Path) -> None:
    from benchcoe_plugins.training.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    shades = ("#b2182b", "#ef8a62", "#67001f")
    for row, colour in zip(rows, shades):
        sweep = sorted(row["sweep"], key=lambda p: p["strong_share"])
        gap = row["second_accuracy"] - row["first_accuracy"]
        ax.plot([100 * p["strong_share"] for p in sweep], [(p["accuracy"] - row["first_accuracy"]) / gap for p in sweep],
                color=colour, label=f"seed {row['seed']}: CPT(50 %) {100 * row['CPT_50']:.1f} %")
    ax.plot([0, 100], [0, 1], "--", color="black", alpha=0.6, label="random escalation")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.axvline(30, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("questions escalated to the 70B (%)")
    ax.set_ylabel("share of the 8B -> 70B accuracy gap recovered")
    ax.set_xlim(0, 100)
    ax.set_title("cascade 8B -> 70B on MMLU-Pro, held-out 30 % per seed", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=REPO.parent / "shared" / "data" / "mmlu_pro")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = [run_seed(args.records, seed, Path(work)) for seed in args.seeds]
    print("seed | accuracy / escalated at weight 0 | APGR | CPT(50 %) | CPT(80 %) | cost at CPT(50 %) | budgets held | C | training s")
    for r in rows:
        print(f"{r['seed']} | {r['accuracy_at_weight_0']:.4f} / {100 * r['escalated_at_weight_0']:.1f} % | {r['APGR']:.3f} | "
              f"{100 * r['CPT_50']:.1f} % | {100 * r['CPT_80']:.1f} % | {r['cost_at_CPT_50']:.1f}B | {r['budgets_held']} | "
              f"{r['C']} | {r['training_seconds']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
