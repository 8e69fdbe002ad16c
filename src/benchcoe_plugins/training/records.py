"""Readers for the shared record formats (``../shared/data``): MMLU-Pro, MMMU-Pro and MMMU.

MMLU-Pro and MMMU-Pro: ``questions.jsonl.gz`` + ``records/<model>.jsonl.gz`` (key, pred,
correct). Each question becomes a ``RoutingDocument`` as the harness adapters hand it to the
router at run time: MMLU-Pro ``(task="mmlu_pro_<category>", doc_id=question_id,
text=question, doc=<question row>)``, MMMU-Pro ``(task="mmmu_pro_standard", doc_id=id, ...)``
(subject field ``subject``). MMMU: ``answer_dict_val.json`` + ``<model>.jsonl.gz`` (no question
text; usable for table routers and reports).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from benchcoe_plugins.core.documents import RoutingDocument, normalize_subject
from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.dataset import BenchmarkData, ExpertRow, join_experts


def mmlu_pro_task(category: str) -> str:
    return "mmlu_pro_" + normalize_subject(category).replace(" ", "_")


def available_experts(records_dir: Path) -> list[str]:
    return sorted(p.name[: -len(".jsonl.gz")] if p.name.endswith(".gz") else p.stem
                  for p in Path(records_dir).glob("*.jsonl*"))


@contextmanager
def malformed_rows(path: Path, fields: str) -> Iterator[None]:
    """A row of the wrong shape in ``path`` becomes one RecordsError naming the file and the fields."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, RecordsError):
            raise
        raise RecordsError(f"{path}: a row lacks or mistypes a field ({type(error).__name__}: {error}); "
                           f"rows need {fields}.") from None


def record_correct(record: dict[str, Any], question: dict[str, Any]) -> float:
    """1.0 or 0.0: the record's ``correct`` (true / false, or 1 / 0), else whether its ``pred`` is the
    question's ``answer``. Anything else (a string such as "false", which would be truthy) is refused."""
    correct = record.get("correct")
    if correct is None:
        if "pred" not in record:
            raise ValueError("neither 'correct' nor 'pred'")
        return float(record["pred"] == question.get("answer"))
    if isinstance(correct, bool) or (isinstance(correct, (int, float)) and correct in (0, 1)):
        return float(correct)
    raise ValueError(f"'correct' is {correct!r}, not true / false")


MMMU_PRO_TASK = "mmmu_pro_standard"


@dataclass(frozen=True)
class QuestionFormat:
    """How one records folder names things: the question key, the subject field, the task."""

    name: str
    key_field: str
    subject_field: str
    task_of: Callable[[str], str]
    key_type: Callable[[Any], Any]


MMLU_PRO = QuestionFormat("MMLU-Pro", "question_id", "category", mmlu_pro_task, int)
# lmms-eval's task for these records; its documents carry the same ``id`` (e.g. test_History_1).
MMMU_PRO = QuestionFormat("MMMU-Pro", "id", "subject", lambda subject: MMMU_PRO_TASK, str)


def questions_file(data_dir: Path) -> Path | None:
    return next((p for p in (data_dir / "questions.jsonl.gz", data_dir / "questions.jsonl") if p.is_file()), None)


def records_format(data_dir: str | Path) -> QuestionFormat:
    """Which question-records format ``data_dir`` holds, by its first question's key field."""
    data_dir = Path(data_dir)
    path = questions_file(data_dir)
    if path is None or not (data_dir / "records").is_dir():
        raise RecordsError(f"{data_dir} is not a records folder: expected questions.jsonl.gz and "
                           f"records/<model>.jsonl.gz.")
    first = next(iter(read_jsonl(path)), None)
    for fmt in (MMLU_PRO, MMMU_PRO):
        if isinstance(first, dict) and fmt.key_field in first:
            return fmt
    raise RecordsError(f"{path}: its questions have neither 'question_id' (MMLU-Pro) nor 'id' (MMMU-Pro); "
                       f"first row's fields: {sorted(first) if isinstance(first, dict) else first!r}.")


def load_question_records(data_dir: str | Path, experts: Sequence[str] | None = None, limit: int | None = None,
                          categories: Sequence[str] | None = None, on_missing: str = "drop",
                          fmt: QuestionFormat | None = None) -> BenchmarkData:
    """``data_dir`` holds questions.jsonl.gz and records/; ``experts`` = record file stems.
    ``fmt`` defaults to the format the folder holds (:func:`records_format`)."""
    data_dir = Path(data_dir)
    fmt = fmt or records_format(data_dir)
    questions_path = questions_file(data_dir)
    records_dir = data_dir / "records"
    if questions_path is None or not records_dir.is_dir():
        raise RecordsError(f"{data_dir} is not an {fmt.name} records folder: expected questions.jsonl.gz and "
                           f"records/<model>.jsonl.gz.")
    known = available_experts(records_dir)
    experts = list(experts) if experts else known
    unknown = [e for e in experts if e not in known]
    if unknown:
        raise RecordsError(f"no records for experts {unknown} in {records_dir}; available: {known}.")
    wanted = {normalize_subject(c) for c in categories} if categories else None
    questions: dict[Any, dict[str, Any]] = {}
    needs = f"{fmt.key_field}, {fmt.subject_field}, question"
    with malformed_rows(questions_path, needs):
        for number, row in enumerate(read_jsonl(questions_path), 1):
            if row.get(fmt.subject_field) in (None, "") or row.get(fmt.key_field) in (None, ""):
                absent = fmt.subject_field if row.get(fmt.subject_field) in (None, "") else fmt.key_field
                raise RecordsError(f"{questions_path}, question {number}: no '{absent}' field; every {fmt.name} question "
                                   f"needs '{fmt.key_field}' and '{fmt.subject_field}'. Fix or drop that row.")
            if wanted and normalize_subject(row[fmt.subject_field]) not in wanted:
                continue
            key = fmt.key_type(row[fmt.key_field])
            if key in questions:
                raise RecordsError(f"{questions_path}, question {number}: {fmt.key_field} {key!r} appears twice; "
                                   f"keep one row per question.")
            if not isinstance(row.get("question", ""), (str, type(None))):
                raise RecordsError(f"{questions_path}, question {number}: 'question' is {row['question']!r}, not "
                                   f"text; fix or drop that row.")
            questions[key] = row
            if limit and len(questions) >= limit:
                break
        documents = {key: RoutingDocument(fmt.task_of(q[fmt.subject_field]), key, q.get("question") or "", q)
                     for key, q in questions.items()}
    if not questions:
        raise RecordsError(f"{questions_path} holds no questions{' of ' + str(sorted(wanted)) if wanted else ''}.")
    per_expert: dict[str, dict[Any, ExpertRow]] = {}
    for expert in experts:
        rows: dict[Any, ExpertRow] = {}
        records_path = records_dir / f"{expert}.jsonl.gz"
        with malformed_rows(records_path, f"{fmt.key_field} and correct or pred"):
            for number, record in enumerate(read_jsonl(records_path), 1):
                key = fmt.key_type(record[fmt.key_field])
                if key in documents:
                    if (documents[key].task, key) in rows:
                        raise RecordsError(f"{records_path}, row {number}: a second record of {fmt.key_field} "
                                           f"{key!r}; keep one record per question.")
                    question = questions[key]
                    rows[(documents[key].task, key)] = ExpertRow(documents[key], record_correct(record, question),
                                                                 normalize_subject(question[fmt.subject_field]))
        per_expert[expert] = rows
    return join_experts(per_expert, source=f"{fmt.name.lower()} records {data_dir}", on_missing=on_missing)


def load_mmlu_pro(data_dir: str | Path, experts: Sequence[str] | None = None, limit: int | None = None,
                  categories: Sequence[str] | None = None, on_missing: str = "drop") -> BenchmarkData:
    return load_question_records(data_dir, experts, limit, categories, on_missing, fmt=MMLU_PRO)


def load_mmmu_pro(data_dir: str | Path, experts: Sequence[str] | None = None, limit: int | None = None,
                  subjects: Sequence[str] | None = None, on_missing: str = "drop") -> BenchmarkData:
    return load_question_records(data_dir, experts, limit, subjects, on_missing, fmt=MMMU_PRO)


class _NoGuess:
    """Stands in for the ``random`` module inside MMMU's parser: where no option parses, the parser
    guesses a letter at random; here it returns None, so such a response counts as wrong."""

    @staticmethod
    def choice(options: Sequence[Any]) -> None:
        return None


def mmmu_is_correct(record: dict[str, Any], gold: dict[str, Any]) -> bool:
    """MMMU's own answer check (the parser and matching lmms-eval's ``mmmu`` tasks use), made
    deterministic: a multiple-choice response in which no option parses is wrong, not guessed."""
    import sys

    from lmms_eval.tasks.mmmu import utils as mmmu

    parse = getattr(mmmu, "parse_mmmu_multi_choice_response", mmmu.parse_multi_choice_response)
    parser = sys.modules[parse.__module__]  # where the parser's random guess lives
    response = str(record.get("response", ""))
    answer = gold.get("ground_truth", gold.get("answer", record.get("answer")))
    if record.get("question_type", gold.get("question_type")) == "multiple-choice":
        index2ans = {str(k): str(v) for k, v in (record.get("index2ans") or {}).items()}
        choices = [str(c) for c in (record.get("all_choices") or sorted(index2ans))]
        guesser, parser.random = parser.random, _NoGuess
        try:
            prediction = parse(response, choices, index2ans)
        finally:
            parser.random = guesser
        return prediction is not None and bool(mmmu.eval_multi_choice(answer, prediction))
    return bool(mmmu.eval_open(answer, mmmu.parse_open_response(response)))


def load_mmmu(data_dir: str | Path, experts: Sequence[str] | None = None, on_missing: str = "drop") -> BenchmarkData:
    """``data_dir`` holds answer_dict_val.json and ``<model>.jsonl.gz`` per expert."""
    data_dir = Path(data_dir)
    answers_path = data_dir / "answer_dict_val.json"
    if not answers_path.is_file():
        raise RecordsError(f"{data_dir} is not an MMMU records folder: answer_dict_val.json is missing.")
    try:
        gold = json.loads(answers_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RecordsError(f"{answers_path} is not readable JSON ({error}).") from None
    if not isinstance(gold, dict):
        raise RecordsError(f"{answers_path} must map question ids to answers.")
    known = available_experts(data_dir)
    experts = list(experts) if experts else known
    unknown = [e for e in experts if e not in known]
    if unknown:
        raise RecordsError(f"no MMMU records for experts {unknown} in {data_dir}; available: {known}.")
    per_expert: dict[str, dict[Any, ExpertRow]] = {}
    for expert in experts:
        rows: dict[Any, ExpertRow] = {}
        records_path = data_dir / f"{expert}.jsonl.gz"
        with malformed_rows(records_path, "id, response, subject"):
            for record in read_jsonl(records_path):
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
