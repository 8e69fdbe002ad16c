"""What a cascade would add to cost-aware routing: the weak expert's own output as a signal.

A router decides before any expert runs. A cascade (FrugalGPT, AutoMix) runs the weak expert
first and escalates to the strong one when the weak answer looks wrong; it pays the weak
expert on every document. This probe measures one such signal on the real MMLU-Pro records:
the weak expert's output never states "the answer is" (a run-away or truncated chain of
thought, whose letter the MMLU-Pro authors' extraction then guessed).

Two experts (Meta-Llama-3_1-8B-Instruct -> Meta-Llama-3_1-70B), split 60 / 10 / 30 by seed as in
``benchcoe train``; every row fits on the 70 % and scores the 30 % test part:

- ``router``: the product's ``QueryRouter(head="knn", neighbours=100, prior_field="src",
  blend=0.5, margin=0)``, i.e. ``benchcoe train --head knn --neighbours 100 --prior-field src
  --blend 0.5 --margin 0 --no-guard --refit``;
- ``router + no-answer escalation``: the same scores, with the strong expert's score raised,
  where the weak output has no answer, by the strong-minus-weak accuracy gap measured on the
  fit documents that have none;
- ``router + learned escalation``: two logistic regressions (C = 1) fitted on the fit part,
  P(strong right, weak wrong) and P(weak right, strong wrong), over the router's strong-minus-weak
  score (out of fold, 5 folds, so the fit part sees scores like the test part's) and four
  features of the weak expert's output (no stated answer, log length, distinct option letters
  it names, a hedge word such as "approximately" or "closest"); the strong expert's score is
  their difference. One fixed recipe: nothing is chosen on the test part.

All are swept over the cost weight exactly as ``benchcoe evaluate`` does (cost = parameter
count): APGR, CPT(50 %), CPT(80 %), and the cost per document at CPT(50 %), where the
cascade also pays the weak expert on every document.

    python benchmarks/cascade_probe.py --seeds 0 1 2 --json benchmarks/results/cascade_probe.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedding_recipes import (  # noqa: E402
    PARAMETER_COUNTS, TWO, add_embedding_cache_argument, out_of_fold, router_scores)
from pool_sizes import RECORDS  # noqa: E402

NO_ANSWER_MARK = "answer is"
HEDGES = ("approximately", "closest", "none of the", "not listed", "not among")
OPTION_LETTER = re.compile(r"\(([A-J])\)")
ROUTER_SETTINGS = dict(head="knn", neighbours=100, prior_field="src", blend=0.5)  # router_scores: margin 0, no guard


def weak_outputs(records_dir: Path, expert: str, ids: list) -> list[str]:
    path = records_dir / "records" / f"{expert}.jsonl.gz"
    with gzip.open(path, "rt") as lines:
        text = {row["question_id"]: row["generated_text"] or "" for row in map(json.loads, lines)}
    return [text[i] for i in ids]


def output_features(outputs: list[str]) -> np.ndarray:
    """Per output: no stated answer, log length, distinct option letters named, a hedge word."""
    return np.array([[NO_ANSWER_MARK not in text, np.log1p(len(text)), len(set(OPTION_LETTER.findall(text))),
                      any(h in text.lower() for h in HEDGES)] for text in outputs], dtype=float)


def learned_escalation(fit_features: np.ndarray, fit_correct: np.ndarray, test_features: np.ndarray) -> np.ndarray:
    """P(strong right, weak wrong) - P(weak right, strong wrong) on the test documents."""
    from sklearn.linear_model import LogisticRegression

    weak, strong = fit_correct[:, 0], fit_correct[:, 1]
    gain = np.zeros(len(test_features))
    for sign, target in ((1, (strong > weak)), (-1, (weak > strong))):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(fit_features, target.astype(int))
        gain += sign * model.predict_proba(test_features)[:, 1]
    return gain


def run_seed(seed: int, documents: list, correct: np.ndarray, outputs: np.ndarray, costs: np.ndarray) -> dict:
    from benchcoe_plugins.training.cost_curve import cost_curve
    from benchcoe_plugins.training.dataset import fit_and_test_indices

    fit, test = fit_and_test_indices(len(documents), seed)

    def router(fit_part: np.ndarray, score_part: np.ndarray) -> np.ndarray:
        return router_scores(documents, correct, TWO, fit_part, score_part, **ROUTER_SETTINGS).astype(float)

    scores = router(fit, test)
    weak, strong = 0, 1
    no_answer = outputs[:, 0]
    flagged = fit[no_answer[fit] == 1]
    lift = float(correct[flagged, strong].mean() - correct[flagged, weak].mean())
    escalated = scores.copy()
    escalated[:, strong] += lift * no_answer[test]
    fit_scores = out_of_fold(router, fit, len(TWO), seed)
    learned = np.zeros_like(scores)
    learned[:, strong] = learned_escalation(
        np.column_stack([fit_scores[:, strong] - fit_scores[:, weak], outputs[fit]]), correct[fit],
        np.column_stack([scores[:, strong] - scores[:, weak], outputs[test]]))
    rows = {}
    for name, table, weak_always_paid in (("router", scores, False),
                                          ("router + no-answer escalation", escalated, True),
                                          ("router + learned escalation", learned, True)):
        curve = cost_curve(table, correct[test], TWO, costs, table.argmax(axis=1))
        share = curve["CPT_50"]
        cost = None if share is None else (
            (costs[weak] if weak_always_paid else (1 - share) * costs[weak]) + share * costs[strong])
        rows[name] = {"APGR": curve["APGR"], "CPT_50": share, "CPT_80": curve["CPT_80"], "cost_at_CPT_50": cost}
    return {"seed": seed, "test_documents": int(len(test)), "no_answer_share_test": float(no_answer[test].mean()),
            "lift_on_fit": lift, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_embedding_cache_argument(parser)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    os.environ["BENCHCOE_EMBEDDING_CACHE"] = str(args.embedding_cache)  # the option wins, as in embedding_recipes.py
    from benchcoe_plugins.routers.cost import cost_vector, parameter_counts
    from benchcoe_plugins.training.records import load_mmlu_pro

    data = load_mmlu_pro(RECORDS, TWO)
    if list(data.experts) != TWO:
        raise SystemExit(f"expected experts {TWO}, the records give {list(data.experts)}")
    documents = list(data.documents)
    outputs = output_features(weak_outputs(RECORDS, TWO[0], [d.doc["question_id"] for d in documents]))
    costs = cost_vector(TWO, parameter_counts(PARAMETER_COUNTS))
    results = [run_seed(seed, documents, data.correct.astype(int), outputs, costs) for seed in args.seeds]
    print(f"{TWO[0]} output states no answer on {outputs[:, 0].mean():.1%} of all {len(documents)} questions")
    print(f"{'seed':>4}  {'recipe':<31} {'APGR':>6} {'CPT(50%)':>9} {'CPT(80%)':>9} {'cost/doc at CPT(50%)':>21}")
    for result in results:
        for name, row in result["rows"].items():
            pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
            cost = "-" if row["cost_at_CPT_50"] is None else f"{row['cost_at_CPT_50']:.1f}B"
            print(f"{result['seed']:>4}  {name:<31} {row['APGR']:>6.3f} {pct(row['CPT_50']):>9} "
                  f"{pct(row['CPT_80']):>9} {cost:>21}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
