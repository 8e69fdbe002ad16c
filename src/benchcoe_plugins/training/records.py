"""Readers for the shared record formats (``../shared/data``): MMLU-Pro and MMMU.

MMLU-Pro: ``questions.jsonl.gz`` + ``records/<model>.jsonl.gz`` (question_id, pred,
correct). Each question becomes ``RoutingDocument(task="mmlu_pro_<category>",
doc_id=question_id, text=question, doc=<question row>)`` -- what the harness adapters hand
the router at run time. MMMU: ``answer_dict_val.json`` + ``<model>.jsonl.gz`` (no question
text; usable for table routers and reports).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from benchcoe_plugins.core.documents import RoutingDocument, normalize_subject
from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.dataset import BenchmarkData, ExpertRow, join_experts


def mmlu_pro_task(category: str) -> str:
    return "mmlu_pro_" + normalize_subject(category).replace(" ", "_")


def available_experts(records_dir: Path) -> list[str]:
    return sorted(p.name[: -len(".jsonl.gz")] if p.name.endswith(".gz") else p.stem
                  for p in Path(records_dir).glob("*.jsonl*"))


def load_mmlu_pro(data_dir: str | Path, experts: Sequence[str] | None = None, limit: int | None = None,
                  categories: Sequence[str] | None = None, on_missing: str = "drop") -> BenchmarkData:
    """``data_dir`` holds questions.jsonl.gz and records/; ``experts`` = record file stems."""
    data_dir = Path(data_dir)
    questions_path = data_dir / "questions.jsonl.gz"
    if not questions_path.is_file():
        questions_path = data_dir / "questions.jsonl"
    records_dir = data_dir / "records"
    if not questions_path.is_file() or not records_dir.is_dir():
        raise RecordsError(f"{data_dir} is not an MMLU-Pro records folder: expected questions.jsonl.gz and "
                           f"records/<model>.jsonl.gz.")
    known = available_experts(records_dir)
    experts = list(experts) if experts else known
    unknown = [e for e in experts if e not in known]
    if unknown:
        raise RecordsError(f"no records for experts {unknown} in {records_dir}; available: {known}.")
    wanted = {normalize_subject(c) for c in categories} if categories else None
    questions: dict[int, dict[str, Any]] = {}
    for row in read_jsonl(questions_path):
        if wanted and normalize_subject(row["category"]) not in wanted:
            continue
        questions[int(row["question_id"])] = row
        if limit and len(questions) >= limit:
            break
    if not questions:
        raise RecordsError(f"{questions_path} holds no questions{' of ' + str(sorted(wanted)) if wanted else ''}.")
    documents = {qid: RoutingDocument(mmlu_pro_task(q["category"]), qid, q["question"], q) for qid, q in questions.items()}
    per_expert: dict[str, dict[Any, ExpertRow]] = {}
    for expert in experts:
        rows: dict[Any, ExpertRow] = {}
        for record in read_jsonl(records_dir / f"{expert}.jsonl.gz"):
            qid = int(record["question_id"])
            if qid in documents:
                question = questions[qid]
                correct = record.get("correct")
                if correct is None:
                    correct = record.get("pred") == question.get("answer")
                rows[(documents[qid].task, qid)] = ExpertRow(documents[qid], float(bool(correct)),
                                                             normalize_subject(question["category"]))
        per_expert[expert] = rows
    return join_experts(per_expert, source=f"mmlu_pro records {data_dir}", on_missing=on_missing)


_LETTER = re.compile(r"^\(?([A-Z])[\).:]?(\s|$)")


def mmmu_is_correct(record: dict[str, Any], gold: dict[str, Any]) -> bool:
    """A light re-implementation of MMMU's answer check (letter for multiple choice, text for open)."""
    response = str(record.get("response", "")).strip()
    answer = gold.get("ground_truth", gold.get("answer", record.get("answer")))
    answers = answer if isinstance(answer, list) else [answer]
    if record.get("question_type", gold.get("question_type")) == "multiple-choice":
        match = _LETTER.match(response)
        if match:
            return match.group(1) in answers
        options = record.get("index2ans") or {}
        hits = [letter for letter, text in options.items() if str(text).strip() and str(text).strip().lower() in response.lower()]
        return len(hits) == 1 and hits[0] in answers
    normalized = response.lower().rstrip(".")
    return any(str(a).strip().lower() == normalized or str(a).strip().lower() in normalized.split() for a in answers)


def load_mmmu(data_dir: str | Path, experts: Sequence[str] | None = None, on_missing: str = "drop") -> BenchmarkData:
    """``data_dir`` holds answer_dict_val.json and ``<model>.jsonl.gz`` per expert."""
    data_dir = Path(data_dir)
    answers_path = data_dir / "answer_dict_val.json"
    if not answers_path.is_file():
        raise RecordsError(f"{data_dir} is not an MMMU records folder: answer_dict_val.json is missing.")
    gold = json.loads(answers_path.read_text())
    known = available_experts(data_dir)
    experts = list(experts) if experts else known
    unknown = [e for e in experts if e not in known]
    if unknown:
        raise RecordsError(f"no MMMU records for experts {unknown} in {data_dir}; available: {known}.")
    per_expert: dict[str, dict[Any, ExpertRow]] = {}
    for expert in experts:
        rows: dict[Any, ExpertRow] = {}
        for record in read_jsonl(data_dir / f"{expert}.jsonl.gz"):
            doc_id = record["id"]
            doc = {"id": doc_id, "subject": record.get("subject"), "question_type": record.get("question_type")}
            document = RoutingDocument("mmmu_val", doc_id, "", doc)
            reference = gold.get(doc_id, {})
            if not isinstance(reference, dict):
                reference = {"ground_truth": reference}
            rows[("mmmu_val", doc_id)] = ExpertRow(document, float(mmmu_is_correct(record, reference)),
                                                   normalize_subject(record["subject"]) if record.get("subject") else None)
        per_expert[expert] = rows
    return join_experts(per_expert, source=f"mmmu records {data_dir}", on_missing=on_missing)
