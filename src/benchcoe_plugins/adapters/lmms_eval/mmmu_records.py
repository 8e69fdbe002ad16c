"""Score MMMU validation records (raw responses against the gold answers).

Records: ``llava1.5_13b.jsonl.gz`` and ``qwen_vl.jsonl.gz`` (MMMU-Benchmark/MMMU,
``mmmu/example_outputs/``, Apache-2.0): one line per validation question with ``id``,
``question_type``, ``all_choices``, ``index2ans``, raw ``response``. Gold answers come
from ``answer_dict_val.json`` (``ground_truth``: a letter, a string or a list of strings).

How a raw response is scored (``is_correct``):

* multiple-choice: the predicted letter is, in this order, (1) the whole response when it
  is one of ``all_choices`` (case-insensitive, brackets and a trailing ``.``/``)`` removed);
  (2) a leading ``(X)``, ``X)``, ``X.`` or ``X:``; (3) ``answer is X`` / ``answer: X`` /
  ``option X`` anywhere; (4) the only choice whose option text occurs in the response.
  No letter found -> wrong. Correct when the letter equals the gold letter.
* short-answer: correct when a normalized gold answer (lower case, no spaces, ``$`` or
  trailing ``.``) occurs in the normalized response, or when a number in the response is
  within 1 % of a numeric gold answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchcoe_plugins.core.jsonl import read_jsonl

EXPERTS = ("llava1.5_13b", "qwen_vl")
SUBJECT_RULES = [{"task": "mmmu*", "field": "id", "pattern": r"^(?:validation|test|dev)_(.+)_\d+$"}]
_LEADING = re.compile(r"^\s*\(?([A-Za-z])\s*[).:]")
_STATED = re.compile(r"(?:answer\s*(?:is|:)\s*|option\s+)\(?([A-Za-z])\b\)?", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def predicted_letter(response: str, choices: Sequence[str], index2ans: Mapping[str, str]) -> str | None:
    """The option letter a raw multiple-choice response gives, by the rules in the module doc."""
    letters = {c.upper() for c in choices}
    bare = response.strip().strip("()").rstrip(".)").strip().upper()
    if bare in letters:
        return bare
    for pattern in (_LEADING, _STATED):
        match = pattern.search(response)
        if match and match.group(1).upper() in letters:
            return match.group(1).upper()
    lowered = response.lower()
    mentioned = [letter for letter, text in index2ans.items() if str(text).strip() and str(text).lower() in lowered]
    return mentioned[0].upper() if len(mentioned) == 1 else None


def _normalize(text: str) -> str:
    return re.sub(r"[\s$]+", "", str(text).lower()).rstrip(".")


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in _NUMBER.findall(str(text))]


def short_answer_correct(response: str, gold: str | Sequence[str]) -> bool:
    golds = [gold] if isinstance(gold, str) else list(gold)
    normalized = _normalize(response)
    for answer in golds:
        if _normalize(answer) and _normalize(answer) in normalized:
            return True
        gold_numbers = _numbers(answer)
        if len(gold_numbers) == 1 and re.fullmatch(r"\s*-?[\d,.]+\s*", str(answer)):
            target = gold_numbers[0]
            if any(abs(n - target) <= 0.01 * max(abs(target), 1e-9) for n in _numbers(response)):
                return True
    return False


def is_correct(record: Mapping[str, Any], gold: Mapping[str, Any]) -> bool:
    if gold["question_type"] == "multiple-choice":
        letter = predicted_letter(str(record.get("response", "")), record.get("all_choices", []),
                                  record.get("index2ans", {}))
        return letter is not None and letter == str(gold["ground_truth"]).upper()
    return short_answer_correct(str(record.get("response", "")), gold["ground_truth"])


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in read_jsonl(path)}


def correctness_matrix(data_dir: Path, experts: Sequence[str] = EXPERTS) -> tuple[list[str], np.ndarray]:
    """(question ids, 0/1 matrix questions x experts) over the gold answer ids."""
    gold = json.loads((data_dir / "answer_dict_val.json").read_text())
    records = {name: read_records(data_dir / f"{name}.jsonl.gz") for name in experts}
    ids = sorted(gold)
    matrix = np.array([[is_correct(records[name].get(qid, {}), gold[qid]) for name in experts] for qid in ids],
                      dtype=float)
    return ids, matrix
