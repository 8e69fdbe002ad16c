"""Cascades over the real MMMU-Pro records (../shared/data/mmmu_pro): every ordered pair of the five
VLMs (FIRST answers every question; SECOND answers again where FIRST's answer looks wrong), seeds
0-2, held-out accuracy against the best single expert with the paired standard error.

Each run is exactly ``benchcoe train --router cascade --answer-letters`` (in this process; ``--shape-only``:
without ``--answer-letters``): random split 70 % / 30 %
by seed, the cascade fitted on the 70 % (C by 5-fold cross-validation, guard z = 1 unless
``--guard-z``), every figure on the 30 % test part. The records hold each model's letter
(``response``), so FIRST's answer is read with ``--answer-pattern '^\\s*\\(?([A-J])\\b'``.

    python benchmarks/mmmu_pro_cascade.py [--seeds 0 1 2] [--guard-z 1] [--shape-only] \\
        [--json benchmarks/results/mmmu_pro_cascade.json] [--plot benchmarks/results/mmmu_pro_cascade.png]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

from mmmu_pro_routers import POOLS, RECORDS, SHORT  # the same records, short names and pools

ANSWER_PATTERN = r"^\s*\(?([A-J])\b"


def train_cascade(first: str, second: str, seed: int, guard_z: float | None, letters: bool, folder: Path) -> dict:
    """One ``benchcoe train --router cascade`` run; its held-out evaluation and guard verdict."""
    from benchcoe_plugins.cli import main

    argv = ["train", "--records", str(RECORDS), "--router", "cascade", "--experts", first, second,
            "--answer-pattern", ANSWER_PATTERN, "--seed", str(seed), "--output", str(folder), "--no-plots", "--quiet"]
    argv += ["--no-guard"] if guard_z is None else ["--guard-z", str(guard_z)]
    argv += ["--answer-letters"] if letters else []
    with contextlib.redirect_stdout(io.StringIO()):
        if main(argv):
            raise SystemExit(f"benchcoe {' '.join(argv)} failed")
    manifest = json.loads((folder / "router.json").read_text())
    evaluation = manifest["evaluation"]
    difference = evaluation["router_minus_best_single"]
    return {"first": first, "second": second, "seed": seed, "accuracy": evaluation["accuracy"],
            "best_single": evaluation["baselines"]["best_single"]["accuracy"],
            "best_single_expert": evaluation["baselines"]["best_single"]["expert"],
            "oracle": evaluation["baselines"]["oracle"]["accuracy"],
            "gain": difference["difference"], "gain_se": difference["standard_error"],
            "mode": manifest.get("mode"), "guard": manifest.get("guard")}


def fit_best_single(rows: list[dict], experts) -> float:
    """Test accuracy of the best single of ``experts`` as chosen on the fit part: the expert that is the fit
    part's better one in every pair of ``rows`` it is in (fit accuracies order the experts)."""
    for expert in experts:
        mine = [r for r in rows if expert in (r["first"], r["second"])]
        if mine and all(r["best_single_expert"] == expert for r in mine):
            return mine[0]["best_single"]
    raise SystemExit(f"no expert of {list(experts)} is the better one of all its pairs")


def fit_accuracy(run: dict) -> float:
    """Cross-validated accuracy on the fit part of what the trained router does: the cascade's own, or, after
    its guard chose one expert alone, that expert's (the guard's evidence holds both)."""
    guard = run["guard"]
    return guard["cross_fitted_accuracy"] - (0.0 if run["mode"] == "cascade" else guard["gain_over_best_single"])


def pool_level(runs: list[dict], seeds: list[int]) -> None:
    """The cascade as a recipe for a pool (the pools of benchmarks/mmmu_pro_routers.py): of the pool's ordered
    pairs, the one whose router has the best cross-validated accuracy on the fit part, against the pool's best
    single expert chosen on the fit part (the one that is the better of each of its pairs)."""
    print("pool-level recipe: per pool and seed, the pair chosen on the fit part; test accuracy - the pool's best single")
    gains = []
    for pool in POOLS:
        row = []
        for seed in seeds:
            mine = [r for r in runs if r["seed"] == seed and r["first"] in pool and r["second"] in pool]
            chosen = max(mine, key=fit_accuracy)
            gains.append(chosen["accuracy"] - fit_best_single(mine, pool))
            row.append(f"{SHORT[chosen['first']]}->{SHORT[chosen['second']]}"
                       f"{'' if chosen['mode'] == 'cascade' else ' (guard: one expert)'} {gains[-1]:+.4f}")
        print(f"  {'+'.join(SHORT[e] for e in pool):<36} " + " / ".join(row))
    print(f"  below the best single on {sum(g < -1e-9 for g in gains)} of {len(gains)} runs; mean gain "
          f"{np.mean(gains):+.4f}")


def letter_table(first: str, second: str) -> None:
    """On all questions: per option letter FIRST chose (or none), how often FIRST and SECOND are right."""
    from collections import defaultdict

    from benchcoe_plugins.core.jsonl import read_jsonl

    rows = {e: {r["id"]: r for r in read_jsonl(RECORDS / "records" / f"{e}.jsonl.gz")} for e in (first, second)}
    cells: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for key, row in rows[first].items():
        cells[row["pred"] or "none"].append((bool(row["correct"]), bool(rows[second][key]["correct"])))
    print(f"all {len(rows[first])} questions, by the letter {SHORT[first]} chose: questions, {SHORT[first]} right, "
          f"{SHORT[second]} right")
    for letter in sorted(cells, key=lambda k: (k == "none", k)):
        hits = np.array(cells[letter], dtype=float)
        print(f"  {letter:<5} {len(hits):>4}  {hits[:, 0].mean():.3f}  {hits[:, 1].mean():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--guard-z", type=float, default=1.0, help="the cascade's guard; negative: no guard")
    parser.add_argument("--shape-only", action="store_true",
                        help="without --answer-letters: the cascade reads only the shape of FIRST's answer")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--plot", type=Path, help="PNG: gain over the better of the two experts per pair (mean of seeds, "
                                                  "+- SE)")
    args = parser.parse_args()
    guard_z = None if args.guard_z < 0 else args.guard_z
    pairs = list(itertools.permutations(SHORT, 2))
    from tqdm import tqdm

    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for (first, second), seed in tqdm(list(itertools.product(pairs, args.seeds)), desc="cascades"):
            runs.append(train_cascade(first, second, seed, guard_z, not args.shape_only, Path(scratch) / "router"))
    print(f"cascade FIRST -> SECOND ({'shape of the answer only' if args.shape_only else '--answer-letters'}), "
          f"held-out accuracy per seed {args.seeds} (test part 30 %), guard z = {'off' if guard_z is None else guard_z}; gain = mean over seeds of cascade - best single, +- the seeds' "
          f"paired standard errors combined as if independent")
    print(f"{'pair':<20} {'seeds':<26} {'mean':>7} {'best single':>12} {'gain':>16} {'below':>6} {'routes':>7}")
    summary = []
    for first, second in pairs:
        rows = [r for r in runs if (r["first"], r["second"]) == (first, second)]
        gain = float(np.mean([r["gain"] for r in rows]))
        gain_se = float(np.sqrt(sum(r["gain_se"] ** 2 for r in rows)) / len(rows))
        below = sum(r["accuracy"] < r["best_single"] for r in rows)
        routes = sum(r["mode"] == "cascade" for r in rows)
        name = f"{SHORT[first]}->{SHORT[second]}"
        summary.append({"pair": name, "mean": float(np.mean([r["accuracy"] for r in rows])), "gain": gain,
                        "gain_se": gain_se, "runs_below_best_single": below, "runs_routed": routes})
        per_seed = " / ".join(f"{r['accuracy']:.4f}" for r in rows)
        print(f"{name:<20} {per_seed:<26} {summary[-1]['mean']:>7.4f} "
              f"{np.mean([r['best_single'] for r in rows]):>12.4f} {gain:>+8.4f} +- {gain_se:.4f} {below:>6} "
              f"{routes:>4}/{len(rows)}")
    print(f"runs below the best single expert: {sum(s['runs_below_best_single'] for s in summary)} of {len(runs)}")
    for seed in args.seeds:  # which pair a user would ship, chosen without the test part
        chosen = max((r for r in runs if r["seed"] == seed), key=lambda r: r["guard"]["cross_fitted_accuracy"]
                     if r["guard"] else -1.0)
        print(f"seed {seed}: the pair with the best cross-validated accuracy on the fit part is "
              f"{SHORT[chosen['first']]}->{SHORT[chosen['second']]} ({chosen['guard']['cross_fitted_accuracy']:.4f}); "
              f"test accuracy {chosen['accuracy']:.4f}, best single of the five "
              f"{fit_best_single([r for r in runs if r['seed'] == seed], SHORT):.4f}")
    pool_level(runs, args.seeds)
    letter_table("InternVL2-Llama3-76B", "llava-onevision-qwen2-72b-vo-hf")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"guard_z": guard_z, "answer_letters": not args.shape_only, "seeds": args.seeds,
                                         "summary": summary, "runs": runs},
                                        indent=1) + "\n")
    if args.plot:
        from benchcoe_plugins.training.plots import grouped_bars

        grouped_bars(args.plot, [s["pair"] for s in summary],
                     {"cascade router - better of its two experts": [s["gain"] for s in summary]},
                     f"MMMU-Pro cascades FIRST->SECOND: held-out gain, mean of seeds {args.seeds} (+- SE)",
                     ylabel="accuracy gain", ylim=None, legend_below=False,
                     errors={"cascade router - better of its two experts": [s["gain_se"] for s in summary]})
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
