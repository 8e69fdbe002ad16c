"""Cascades over the real MMMU-Pro records (../shared/data/mmmu_pro): every ordered pair of the five
VLMs (FIRST answers every question; SECOND answers again where FIRST's answer looks wrong), seeds
0-2, held-out accuracy against the best single expert with the paired standard error.

Then the cascade as a recipe for a pool: on every pool of 2-5 of the five VLMs (26 pools) and each seed,
``benchcoe train --router cascade --choose-pair`` chooses the ordered pair by cross-validation of the fit
part, its guard comparing the choice (cross-fitted) with the pool's best single expert; held-out accuracy
against that best single (chosen on the fit part).

Each run is exactly ``benchcoe train --router cascade --answer-letters`` (in this process; ``--shape-only``:
without ``--answer-letters``): random split 70 % / 30 %
by seed, the cascade fitted on the 70 % (C by 5-fold cross-validation, guard z = 1 unless
``--guard-z``), every figure on the 30 % test part. The records hold each model's letter
(``response``), so FIRST's answer is read with ``--answer-pattern '^\\s*\\(?([A-J])\\b'``.

    python benchmarks/mmmu_pro_cascade.py [--seeds 0 1 2] [--guard-z 1] [--shape-only] \\
        [--json benchmarks/results/mmmu_pro_cascade.json] [--plot benchmarks/results/mmmu_pro_cascade.png] [--no-pools]

``--plot X.png`` also writes ``X_pools.png`` (the pool recipe's gain per pool).
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

from mmmu_pro_routers import ALL_POOLS, RECORDS, SHORT  # the same records, short names and pools

ANSWER_PATTERN = r"^\s*\(?([A-J])\b"


def train_cascade(experts: list[str], seed: int, guard_z: float | None, letters: bool, folder: Path,
                  choose_pair: bool = False) -> dict:
    """One ``benchcoe train --router cascade`` run; its held-out evaluation and guard verdict."""
    from benchcoe_plugins.cli import main

    argv = ["train", "--records", str(RECORDS), "--router", "cascade", "--experts", *experts,
            "--answer-pattern", ANSWER_PATTERN, "--seed", str(seed), "--output", str(folder), "--no-plots", "--quiet"]
    argv += ["--no-guard"] if guard_z is None else ["--guard-z", str(guard_z)]
    argv += ["--answer-letters"] if letters else []
    argv += ["--choose-pair"] if choose_pair else []
    with contextlib.redirect_stdout(io.StringIO()):
        if main(argv):
            raise SystemExit(f"benchcoe {' '.join(argv)} failed")
    manifest = json.loads((folder / "router.json").read_text())
    evaluation = manifest["evaluation"]
    difference = evaluation["router_minus_best_single"]
    first, second = manifest["experts"]
    return {"experts": experts, "first": first, "second": second, "seed": seed, "accuracy": evaluation["accuracy"],
            "best_single": evaluation["baselines"]["best_single"]["accuracy"],
            "best_single_expert": evaluation["baselines"]["best_single"]["expert"],
            "oracle": evaluation["baselines"]["oracle"]["accuracy"],
            "gain": difference["difference"], "gain_se": difference["standard_error"],
            "mode": manifest["cascade"]["mode"], "guard": manifest.get("guard")}


def pool_runs(seeds: list[int], guard_z: float | None, letters: bool, scratch: Path) -> list[dict]:
    """``--choose-pair`` on every pool of 2-5 of the five VLMs."""
    from tqdm import tqdm

    return [train_cascade(pool, seed, guard_z, letters, scratch / "pool", choose_pair=True)
            for pool, seed in tqdm(list(itertools.product(ALL_POOLS, seeds)), desc="pools")]


def pool_table(runs: list[dict], seeds: list[int]) -> None:
    print(f"cascade --choose-pair on every pool of 2-{len(SHORT)} (the pair and its order chosen by cross-validation "
          f"of the fit part): per seed {seeds}, the pair it runs ('guard: X' = everything to X) and held-out "
          f"accuracy - the pool's best single expert (chosen on the fit part)")
    for pool in ALL_POOLS:
        rows = [r for r in runs if r["experts"] == pool]
        cells = [(f"guard: {SHORT[r['best_single_expert']]}" if r["mode"] == "best"
                  else f"{SHORT[r['first']]}->{SHORT[r['second']]}") + f" {r['gain']:+.4f}" for r in rows]
        print(f"  {'+'.join(SHORT[e] for e in pool):<34} " + " / ".join(f"{c:<22}" for c in cells))
    gains = np.array([r["gain"] for r in runs])
    whole = [r for r in runs if len(r["experts"]) == len(SHORT)]
    whole_accuracy = " / ".join(f"{r['accuracy']:.4f}" for r in whole)
    print(f"  below the pool's best single on {int((gains < -1e-9).sum())} of {len(runs)} runs (worst {gains.min():+.4f}); "
          f"routed on {sum(r['mode'] == 'cascade' for r in runs)}; mean gain {gains.mean():+.4f}; all five: "
          f"accuracy {whole_accuracy} (mean {np.mean([r['accuracy'] for r in whole]):.4f}), "
          f"best single {np.mean([r['best_single'] for r in whole]):.4f}")


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
    parser.add_argument("--no-pools", action="store_true", help="skip the --choose-pair runs on every pool")
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
            runs.append(train_cascade([first, second], seed, guard_z, not args.shape_only, Path(scratch) / "router"))
        pools = [] if args.no_pools else pool_runs(args.seeds, guard_z, not args.shape_only, Path(scratch))
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
    if pools:
        pool_table(pools, args.seeds)
    letter_table("InternVL2-Llama3-76B", "llava-onevision-qwen2-72b-vo-hf")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"guard_z": guard_z, "answer_letters": not args.shape_only, "seeds": args.seeds,
                                         "summary": summary, "runs": runs, "pool_runs": pools},
                                        indent=1) + "\n")
    if args.plot:
        from benchcoe_plugins.training.plots import grouped_bars

        grouped_bars(args.plot, [s["pair"] for s in summary],
                     {"cascade router - better of its two experts": [s["gain"] for s in summary]},
                     f"MMMU-Pro cascades FIRST->SECOND: held-out gain, mean of seeds {args.seeds} (+- SE)",
                     ylabel="accuracy gain", ylim=None, legend_below=False,
                     errors={"cascade router - better of its two experts": [s["gain_se"] for s in summary]})
        print(f"plot: {args.plot}")
        if pools:
            names = list(dict.fromkeys("+".join(SHORT[e] for e in r["experts"]) for r in pools))
            per_pool = [[r for r in pools if "+".join(SHORT[e] for e in r["experts"]) == n] for n in names]
            label = "cascade --choose-pair - the pool's best single"
            pool_plot = args.plot.with_name(f"{args.plot.stem}_pools.png")
            grouped_bars(pool_plot, names, {label: [float(np.mean([r["gain"] for r in rows])) for rows in per_pool]},
                         f"MMMU-Pro, every pool of 2-5 VLMs: held-out gain of the chosen cascade, mean of seeds "
                         f"{args.seeds} (+- SE)", ylabel="accuracy gain", ylim=None, legend_below=False,
                         errors={label: [float(np.sqrt(sum(r["gain_se"] ** 2 for r in rows)) / len(rows))
                                         for rows in per_pool]})
            print(f"plot: {pool_plot}")


if __name__ == "__main__":
    main()
