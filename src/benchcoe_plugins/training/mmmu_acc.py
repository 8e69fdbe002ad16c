"""The score lmms-eval gives one row of its MMMU-family ``mmmu_acc`` metric, without importing lmms-eval.

Two shapes of the dict reach a sample log:

- ``mmmu_val`` / ``mmmu_test`` (and tasks built like them): ``{id, subdomain, question_type, answer,
  parsed_pred}``. lmms-eval 0.7 logs ``parsed_pred`` as one prediction per response (a letter for a
  multiple-choice question, a list of candidate answers for an open one); earlier versions logged the
  one response's prediction itself. A row is right when any response's prediction is right.
  Multiple-choice: the letter must equal the gold answer (or one of a list of them) exactly. Open:
  the gold answer is normalized -- a number loses its commas and is rounded to two decimals, text
  is lower-cased and a single character is padded with a space on one side or the other so that it
  matches a word rather than any letter -- and a candidate is right when it is that number or, for
  text, contains that text. The candidates are already normalized by lmms-eval's parser.
- ``mmmu_pro_*``: ``{id, subject, answer, parsed_pred}`` with no ``question_type``. A letter must equal
  the gold letter exactly; ``mmmu_pro_composite`` pairs a list of gold letters with a list of
  predicted ones, and its row scores the fraction of pairs that match (lmms-eval counts each pair).
"""

from __future__ import annotations

from typing import Any, Mapping

MULTIPLE_CHOICE = "multiple-choice"


def normalized_answer(text: Any) -> list[str | float]:
    """The forms a gold open answer is compared in: a rounded number, else lower-case text (padded
    when it is one character)."""
    text = str(text).strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        pass
    text = text.lower()
    if len(text) == 1:  # "a" alone would match the letter inside any word
        return [f" {text}", f"{text} "]
    return [text]


def open_prediction_is_right(gold: Any, candidates: Any) -> bool:
    """One response's candidate answers against an open question's gold answer (or list of them)."""
    golds = [form for answer in (gold if isinstance(gold, list) else [gold]) for form in normalized_answer(answer)]
    if not isinstance(candidates, list):  # a prediction logged as one string is one candidate
        candidates = [candidates]
    for candidate in candidates:
        if isinstance(candidate, str):
            if any(isinstance(form, str) and form in candidate for form in golds):
                return True
        elif candidate in golds:  # a number: equal to a numeric gold form
            return True
    return False


def choice_is_right(gold: Any, letter: Any) -> bool:
    return letter in gold if isinstance(gold, list) else letter == gold


def responses_of(parsed_pred: Any, open_question: bool) -> list[Any]:
    """The per-response predictions of an MMMU row, in either logged layout."""
    if not isinstance(parsed_pred, list):
        return [parsed_pred]
    if open_question and not all(isinstance(p, list) for p in parsed_pred):
        return [parsed_pred]  # lmms-eval before 0.7: the one response's candidate list itself
    return parsed_pred


def mmmu_row_score(value: Mapping[str, Any]) -> float | None:
    """lmms-eval's score of one ``mmmu_acc`` dict (0.0 / 1.0, or a fraction for MMMU-Pro composite);
    None for a row lmms-eval leaves out of its count."""
    gold, parsed_pred = value["answer"], value["parsed_pred"]
    if "question_type" in value:
        open_question = value["question_type"] != MULTIPLE_CHOICE
        right = open_prediction_is_right if open_question else choice_is_right
        return float(any(right(gold, pred) for pred in responses_of(parsed_pred, open_question)))
    if isinstance(gold, str) and isinstance(parsed_pred, str):
        return float(gold == parsed_pred)
    if isinstance(gold, list) and isinstance(parsed_pred, list):
        pairs = list(zip(gold, parsed_pred))
        return sum(g == p for g, p in pairs) / len(pairs) if pairs else None
    return None
