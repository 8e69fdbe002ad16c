"""An lmms-eval sample log's ``mmmu_acc`` row is scored as lmms-eval scores it.

Each case's expected score was obtained from lmms-eval's own functions (``evaluate_mmmu`` of the mmmu
and mmmu_pro tasks, or ``eval_open`` / ``eval_multi_choice`` for the layout lmms-eval logged before 0.7),
and :func:`test_lmms_eval_gives_the_expected_score` checks it against them again. The open answers with
MMMU ids are real: lmms-eval's ``parse_open_response`` of the outputs in ``shared/data/mmmu``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.sample_logs import correctness

ID = "validation_Art_1"


def mmmu(question_type: str, answer: Any, parsed_pred: Any, id: str = ID) -> dict[str, Any]:
    return {"id": id, "subdomain": "Art", "question_type": question_type, "answer": answer, "parsed_pred": parsed_pred}


def pro(answer: Any, parsed_pred: Any) -> dict[str, Any]:
    return {"id": "test_History_1", "subject": "History", "answer": answer, "parsed_pred": parsed_pred}


OPEN, CHOICE = "open", "multiple-choice"
# (dict, layout, lmms-eval's score); layout: "0.7" = one prediction per response (lmms-eval 0.7),
# "one" = the single response's prediction itself (earlier lmms-eval), "pro" = mmmu_pro
CASES = [
    # the old string comparison and lmms-eval disagree
    pytest.param(mmmu(OPEN, "0.10", [[0.1]], "validation_Marketing_11"), "0.7", 1.0, id="number-equal-as-number"),
    pytest.param(mmmu(OPEN, "0.963", [[0.96]], "validation_Manage_25"), "0.7", 1.0, id="number-rounded-2-places"),
    pytest.param(mmmu(OPEN, "60", [["60 mbps", 60.0]], "validation_Computer_Science_9"), "0.7", 1.0,
                 id="number-among-candidates"),
    pytest.param(mmmu(OPEN, "A", [["point a shows the repulsive nature of the strong nuclear force"]],
                      "validation_Physics_21"), "0.7", 1.0, id="one-letter-padded-inside-text"),
    pytest.param(mmmu(OPEN, "1,000", [[1000.0]]), "0.7", 1.0, id="gold-with-comma"),
    pytest.param(mmmu(OPEN, ["Tampa", "Florida"], [["tampa bay area"]]), "0.7", 1.0, id="gold-list-contained"),
    pytest.param(mmmu(OPEN, "3", [3.0]), "one", 1.0, id="pre-0.7-number"),
    pytest.param(mmmu(OPEN, "B", ["step b"], "validation_Pharmacy_19"), "one", 1.0, id="pre-0.7-letter-in-text"),
    pytest.param(mmmu(OPEN, "paris", ["capital: paris"]), "one", 1.0, id="pre-0.7-gold-contained"),
    pytest.param(mmmu(CHOICE, "A", ["a"]), "0.7", 0.0, id="choice-letter-case-matters"),
    pytest.param(mmmu(CHOICE, "A", " A"), "one", 0.0, id="choice-letter-exact"),
    pytest.param(pro("A", " A"), "pro", 0.0, id="pro-letter-exact"),
    pytest.param(pro(["A", "B", "C"], ["A", "C", "C"]), "pro", 2 / 3, id="pro-composite-per-pair"),
    # both agree
    pytest.param(mmmu(OPEN, "24.32", [[24.31]], "validation_Chemistry_25"), "0.7", 0.0, id="number-differs"),
    pytest.param(mmmu(OPEN, "3", [["two"]], "validation_Geography_22"), "0.7", 0.0, id="word-for-number"),
    pytest.param(mmmu(OPEN, "C", ["right"], "validation_Basic_Medical_Science_10"), "one", 0.0,
                 id="pre-0.7-letter-not-a-word"),
    pytest.param(mmmu(OPEN, "A", ["a ", " a"], "validation_Pharmacy_26"), "one", 1.0, id="pre-0.7-letter"),
    pytest.param(mmmu(CHOICE, "A", ["B", "A"]), "0.7", 1.0, id="choice-any-response"),
    pytest.param(mmmu(CHOICE, ["A", "B"], ["B"]), "0.7", 1.0, id="choice-gold-list"),
    pytest.param(mmmu(CHOICE, "C", "C"), "one", 1.0, id="pre-0.7-choice"),
    pytest.param(pro("A", "A"), "pro", 1.0, id="pro-letter"),
]


@pytest.mark.parametrize(("value", "layout", "expected"), CASES)
def test_correctness_is_lmms_eval_score(value: dict[str, Any], layout: str, expected: float) -> None:
    score, metric = correctness({"doc_id": 0, "mmmu_acc": value}, None, Path("samples_mmmu_val.jsonl"))
    assert (score, metric) == (pytest.approx(expected), "mmmu_acc")


@pytest.mark.parametrize(("value", "layout", "expected"), CASES)
def test_lmms_eval_gives_the_expected_score(value: dict[str, Any], layout: str, expected: float) -> None:
    mmmu_utils = pytest.importorskip("lmms_eval.tasks.mmmu.utils")
    pro_utils = pytest.importorskip("lmms_eval.tasks.mmmu_pro.utils")
    if layout == "0.7":
        judged, _ = mmmu_utils.evaluate_mmmu([value])
        assert float(judged[value["id"]] == "Correct") == expected
    elif layout == "one":
        check = mmmu_utils.eval_open if value["question_type"] == OPEN else mmmu_utils.eval_multi_choice
        assert float(check(value["answer"], value["parsed_pred"])) == expected
    else:
        assert pro_utils.evaluate_mmmu([value])[1]["acc"] == pytest.approx(expected)


def test_a_row_lmms_eval_leaves_unscored_is_refused() -> None:
    """mmmu_pro counts a row only when answer and parsed_pred are both a letter or both a list."""
    with pytest.raises(RecordsError, match=r"lmms-eval leaves unscored \(both must be a letter, or both a list\)"):
        correctness({"doc_id": 7, "mmmu_acc": pro("A", ["A"])}, None, Path("samples_mmmu_pro_standard.jsonl"))
