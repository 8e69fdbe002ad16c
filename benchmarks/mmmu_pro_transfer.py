"""Transfer of the shipped MMMU-Pro subject router to other tasks: the predicted-subject
distribution per task, from a real offline ``python -m lmms_eval --model coemodel`` run over
mmmu_val, mmstar, scienceqa_img and scienceqa_full (``tests/lmms_transfer.py``).

The documents are the project's SYNTHETIC offline copies of those datasets
(``offline/lmms_datasets.py``: templated questions, generated pictures), and the experts are
one tiny random LLaVA standing in for every VLM the router names: the run shows where the
router places each task's documents, not how well anyone answers them. mmmu_val routes by the
subject in its ids (``subject_source: field``), the other tasks by the subject predicted from
their text.

    python benchmarks/mmmu_pro_transfer.py [--rows 30] [--plot mmmu_pro_transfer.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workspace import REPO, scratch_folder  # noqa: E402
from lmms_transfer import (  # noqa: E402
    routing_rows,
    run_transfer,
    subject_distribution,
    transfer_workspace,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", type=Path, default=REPO / "router_ckpts" / "mmmu_pro_subject")
    parser.add_argument("--rows", type=int, default=30, help="synthetic rows per dataset (all are run)")
    parser.add_argument("--plot", type=Path, default=Path("mmmu_pro_transfer.png"),
                        help="PNG; the distribution goes beside it as JSON")
    args = parser.parse_args()
    from benchcoe_plugins.training.plots import grouped_bars

    root = scratch_folder("benchcoe-transfer-")
    transfer_workspace(root, args.router, args.rows)
    rows = routing_rows(run_transfer(root, args.rows))
    distribution = subject_distribution(rows)
    reasons = {task: sorted({r["reason"] for r in rows if r["task"] == task}) for task in distribution}
    print(f"router {args.router.name}; {args.rows} synthetic documents per task (offline copies)")
    print("| task | documents | subject source | placed in MMMU subject (documents) |")
    print("|---|---:|---|---|")
    for task, counts in sorted(distribution.items()):
        source = "own subject field" if task == "mmmu_val" else "predicted from text"
        placed = ", ".join(f"{s} {n}" for s, n in counts.most_common())
        print(f"| {task} | {sum(counts.values())} | {source} | {placed} |")
    print("routing reasons per task: " + json.dumps(reasons))
    subjects = sorted(set().union(*distribution.values()))
    grouped_bars(args.plot, subjects, {task: [distribution[task][s] for s in subjects] for task in sorted(distribution)},
                 f"MMMU subject each task's documents are placed in ({args.router.name}, synthetic offline copies)",
                 ylabel="documents", ylim=None, legend_below=False)
    args.plot.with_suffix(".json").write_text(json.dumps({t: dict(c) for t, c in distribution.items()}, indent=1) + "\n")
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
