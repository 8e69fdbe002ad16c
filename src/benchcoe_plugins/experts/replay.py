"""Replay experts: answer harness requests from recorded outputs, with no model at all.

Three recorded formats are read (plain or ``.gz`` JSON lines):

- lm-eval ``--log_samples`` files ``samples_<task>_<date>.jsonl``: ``doc_id``, ``doc``,
  ``arguments`` (context, continuation / generation kwargs per request), ``resps`` (raw
  generations, or per-choice ``[loglikelihood, is_greedy]``). Keyed by (task, doc_id), or by
  a field of ``doc`` (``key=question_id``).
- lmms-eval ``--log_samples`` files ``<date>_samples_<task>.jsonl``: ``doc_id``, ``target``,
  ``resps`` (may be absent), ``filtered_resps``, ``input``, ``doc_hash``; no ``doc``, and
  ``doc_hash`` may be the same for every document, so they are keyed by (task, doc_id).
- Benchmark record files (the ``../shared/data`` format): one row per question with a key
  field (``question_id`` or ``id``), an extracted answer (``pred``) and/or the raw output
  (``generated_text`` / ``response``). Keyed by that field of the harness document.

``replay="answer"`` turns a record's extracted letter into ``"The answer is (X)."`` (the
``template``), so a harness regex filter scores exactly what the record says (a record with
no extracted answer replays a text the filter does not match, scored wrong);
``replay="text"`` replays the raw output. ``no_answer="wrong_letter"`` replays a record with
no extracted answer as the template with the first option letter of the document that is
not its ``answer``: a parser that guesses at random when nothing parses (lmms-eval's MMMU
``mmmu_acc``) then scores it wrong, as the record does (``correct`` false), not by chance. A loglikelihood request on a record gives the
recorded answer's choice log-likelihood 0 and every other choice -inf; a record with no
extracted answer gives every choice -inf, so the harness's argmax takes the first choice
(multiple-choice replay of such records is therefore not exact: a warning counts them).

A document that is not recorded is an error naming the task and the document, unless a
``fallback`` is set (``"empty"`` or a text to answer with).
"""

from __future__ import annotations

import ast
import glob
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from benchcoe_plugins.core.errors import ConfigError, RecordsError
from benchcoe_plugins.core.harness_files import task_from_filename
from benchcoe_plugins.core.jsonl import read_jsonl

logger = logging.getLogger(__name__)

RECORD_KEY_FIELDS = ("question_id", "id")
RECORD_ANSWER_FIELDS = ("pred", "prediction", "parsed_pred")
RECORD_TEXT_FIELDS = ("generated_text", "response", "output", "text")
DEFAULT_TEMPLATE = "The answer is ({answer})."
NO_ANSWER_TEXT = "[replay: the record has no extracted answer]"
REPLAY_MODES = ("answer", "text")
NO_ANSWER_MODES = ("text", "wrong_letter")
NEG_INF = float("-inf")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    return (row for row in read_jsonl(path) if isinstance(row, dict))


def expand_paths(value: str | os.PathLike | Sequence[str | os.PathLike], what: str,
                 samples_only: bool = False) -> list[Path]:
    """Files named by ``value``: a file, a folder (its ``*.jsonl``/``*.jsonl.gz``, recursively; with
    ``samples_only`` only those named like harness samples files), a glob, or a list of those."""
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
            if samples_only:
                found = [p for p in found if task_from_filename(p) is not None]
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not found:
            raise ConfigError(f"{what}={str(item)!r}: no such file, folder or glob match with JSONL files. "
                              f"Give the path of a samples/records file or of the folder holding them.")
        files.extend(found)
    return files


def _parse_scalar(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text in ("True", "False"):
            return text == "True"
        try:
            return float(text)
        except ValueError:
            pass
        if text.startswith(("(", "[")):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return value
    return value


def as_loglikelihood(value: Any) -> tuple[float, bool] | None:
    """``[-1.5, False]``, ``["-1.5", "False"]``, ``"(-1.5, False)"`` or those nested in lists."""
    value = _parse_scalar(value)
    while isinstance(value, (list, tuple)) and len(value) == 1:
        value = _parse_scalar(value[0])
    if isinstance(value, (list, tuple)) and len(value) == 2:
        first, second = _parse_scalar(value[0]), _parse_scalar(value[1])
        if isinstance(first, (int, float)) and not isinstance(first, bool) and isinstance(second, bool):
            return float(first), second
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), False
    return None


@dataclass
class RecordedRequest:
    """One recorded request of a document: its arguments (if logged) and its responses (repeats)."""

    context: str | None
    continuation: str | None
    responses: list[Any]


@dataclass
class RecordedDoc:
    source: str
    requests: list[RecordedRequest] = field(default_factory=list)
    answer: str | None = None  # records: extracted answer
    text: str | None = None  # records: raw output
    is_record: bool = False


def _requests_of_log_row(row: Mapping[str, Any]) -> list[RecordedRequest]:
    raw = row.get("resps", row.get("filtered_resps"))
    arguments = row.get("arguments")
    if isinstance(raw, str):
        per_request = [[raw]]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        per_request = [raw]  # lmms-eval flattens the repeats of a document's only request
    elif isinstance(raw, list):
        per_request = [r if isinstance(r, list) else [r] for r in raw]
    else:
        per_request = []
    args_list: list[tuple[str | None, str | None]] = []
    if isinstance(arguments, dict):
        for key in sorted(arguments, key=lambda k: int(re.sub(r"\D", "", k) or 0)):
            entry = arguments[key] or {}
            continuation = entry.get("arg_1")
            args_list.append((entry.get("arg_0"), continuation if isinstance(continuation, str) else None))
    requests = []
    for index, responses in enumerate(per_request):
        context, continuation = args_list[index] if index < len(args_list) else (None, None)
        if context is None and index == 0 and isinstance(row.get("input"), str):
            context = row["input"]
        requests.append(RecordedRequest(context, continuation, list(responses)))
    return requests


class ReplayBook:
    """Recorded answers, looked up by (task, doc_id) or by a document field."""

    def __init__(self, log: Any = None, records: Any = None, key: str | None = None, task: str | None = None,
                 replay: str | None = None, template: str = DEFAULT_TEMPLATE, no_answer: str = "text") -> None:
        check_replay_options(log, records, replay, template, no_answer)
        self.key = key
        self.template = template
        self.replay = replay
        self.no_answer = no_answer
        self.by_task: dict[tuple[str, str], RecordedDoc] = {}
        self.by_field: dict[str, RecordedDoc] = {}
        if log is not None:
            self.files = expand_paths(log, "log", samples_only=True)
            self._read_logs(task)
        else:
            self.files = expand_paths(records, "records")
            self._read_records()

    # -- reading -----------------------------------------------------------------------------
    def _read_logs(self, forced_task: str | None) -> None:
        for path in self.files:
            task = forced_task or task_from_filename(path)
            if task is None and self.key is None:
                raise ConfigError(f"log file {path.name!r} is not named like a harness samples file "
                                  f"(samples_<task>_<date>.jsonl or <date>_samples_<task>.jsonl); pass task=<name> "
                                  f"or key=<doc field> in model_args.")
            for row in _rows(path):
                if "doc_id" not in row:
                    raise RecordsError(f"{path} has a row without doc_id: not a harness --log_samples file. "
                                       f"Use records=... for benchmark record files.")
                recorded = RecordedDoc(source=str(path), requests=_requests_of_log_row(row))
                if self.key is not None:
                    doc = row.get("doc")
                    if not isinstance(doc, Mapping) or self.key not in doc:
                        raise RecordsError(f"{path}: key={self.key!r} needs each row's doc to hold that field, but "
                                           f"doc {row['doc_id']} does not (lmms-eval logs keep no doc). Leave key unset "
                                           f"to key by (task, doc_id).")
                    self.by_field.setdefault(str(doc[self.key]), recorded)
                else:
                    self.by_task.setdefault((task, str(row["doc_id"])), recorded)

    def _read_records(self) -> None:
        for path in self.files:
            for row in _rows(path):
                key = self.key or next((f for f in RECORD_KEY_FIELDS if f in row), None)
                if key is None or key not in row:
                    raise RecordsError(f"{path}: a record has none of the key fields {[self.key] if self.key else list(RECORD_KEY_FIELDS)} "
                                       f"(fields: {sorted(row)}). Pass key=<field> in model_args.")
                self.key = key
                answer = next((row[f] for f in RECORD_ANSWER_FIELDS if f in row), None)
                text = next((row[f] for f in RECORD_TEXT_FIELDS if isinstance(row.get(f), str)), None)
                has_answer_field = any(f in row for f in RECORD_ANSWER_FIELDS)
                if self.replay is None:
                    self.replay = "answer" if has_answer_field else "text"
                if self.replay == "text" and text is None:
                    raise RecordsError(f"{path}: replay=text needs a raw-output field {list(RECORD_TEXT_FIELDS)} "
                                       f"in every record; record {row[key]} has none. Use replay=answer.")
                if self.replay == "answer" and not has_answer_field:
                    raise RecordsError(f"{path}: replay=answer needs an extracted-answer field "
                                       f"{list(RECORD_ANSWER_FIELDS)}; record {row[key]} has none. Use replay=text.")
                self.by_field.setdefault(str(row[key]), RecordedDoc(str(path), answer=answer, text=text, is_record=True))

    def __len__(self) -> int:
        return len(self.by_task) + len(self.by_field)

    def describe(self) -> str:
        names = ", ".join(p.name for p in self.files[:3]) + (f" (+{len(self.files) - 3} more)" if len(self.files) > 3 else "")
        return f"{len(self)} recorded documents from {names}"

    # -- lookup ------------------------------------------------------------------------------
    def key_of(self, task: str, doc_id: Any, doc: Mapping[str, Any] | None) -> str:
        if self.key is None:
            return f"task {task!r} doc_id {doc_id}"
        value = doc.get(self.key) if isinstance(doc, Mapping) else None
        return f"task {task!r} doc_id {doc_id} ({self.key}={value!r})"

    def lookup(self, task: str, doc_id: Any, doc: Mapping[str, Any] | None) -> RecordedDoc | None:
        if self.key is None:
            return self.by_task.get((task, str(doc_id)))
        if not isinstance(doc, Mapping) or self.key not in doc:
            raise RecordsError(f"document {doc_id} of task {task!r} has no field {self.key!r} to look the "
                               f"recording up by (doc fields: {sorted(doc) if isinstance(doc, Mapping) else None}). "
                               f"Pass key=<a field both the documents and the records have>.")
        return self.by_field.get(str(doc[self.key]))

    # -- answers -----------------------------------------------------------------------------
    def record_generation(self, recorded: RecordedDoc, doc: Mapping[str, Any] | None = None) -> str:
        if self.replay == "text":
            return recorded.text or ""
        if recorded.answer in (None, ""):
            if self.no_answer == "wrong_letter":
                return self.template.format(answer=wrong_letter(doc))
            return NO_ANSWER_TEXT
        return self.template.format(answer=recorded.answer)


def wrong_letter(doc: Mapping[str, Any] | None) -> str:
    """The first option letter of a multiple-choice ``doc`` (``options`` a list or its string form,
    ``answer`` a letter) that is not its answer."""
    options = doc.get("options") if isinstance(doc, Mapping) else None
    if isinstance(options, str):
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError):
            options = None
    if not isinstance(options, (list, tuple)) or len(options) < 2 or not isinstance(doc.get("answer"), str):
        raise RecordsError(f"replay: no_answer=wrong_letter needs documents with 'options' (two or more) and an "
                           f"'answer' letter; this one has {sorted(doc) if isinstance(doc, Mapping) else doc!r}. "
                           f"Use no_answer=text.")
    return next(chr(ord("A") + i) for i in range(len(options)) if chr(ord("A") + i) != doc["answer"].strip())


@dataclass
class ReplayRequest:
    """What the replay needs of one harness request."""

    request_type: str  # generate_until | loglikelihood | loglikelihood_rolling
    task: str
    doc_id: Any
    doc: Mapping[str, Any] | None
    index: int  # request index within the document (choice index for multiple choice)
    context: str | None = None
    continuation: str | None = None


class ReplayAnswerer:
    """Turns ``ReplayRequest``s into answers from a ``ReplayBook``; fallback or a clear error."""

    def __init__(self, book: ReplayBook, fallback: str | None = None) -> None:
        self.book = book
        self.fallback = None if fallback in (None, "", "error", "none", "None") else str(fallback)
        self._served: dict[tuple, int] = defaultdict(int)
        self.fallback_docs: set[tuple[str, str]] = set()
        self.context_mismatches = 0
        self.unanswered_choices = 0

    def _fallback_answer(self, request: ReplayRequest) -> Any:
        self.fallback_docs.add((request.task, str(request.doc_id)))
        if request.request_type == "generate_until":
            return "" if self.fallback == "empty" else self.fallback
        if request.request_type == "loglikelihood":
            return (NEG_INF, False)
        return NEG_INF

    def answer_all(self, requests: Sequence[ReplayRequest]) -> list[Any]:
        answers: list[Any] = []
        missing: list[ReplayRequest] = []
        for request in requests:
            recorded = self.book.lookup(request.task, request.doc_id, request.doc)
            if recorded is None:
                if self.fallback is None:
                    missing.append(request)
                    answers.append(None)
                else:
                    answers.append(self._fallback_answer(request))
                continue
            answers.append(self._answer(request, recorded))
        if missing:
            documents = list(dict.fromkeys(self.book.key_of(r.task, r.doc_id, r.doc) for r in missing))
            shown = "; ".join(documents[:5]) + (f"; and {len(documents) - 5} more" if len(documents) > 5 else "")
            raise RecordsError(
                f"replay: {len(documents)} document(s) are not in the recording ({self.book.describe()}): {shown}. "
                f"Replay a log that covers them (same task, same --limit), evaluate only recorded documents, "
                f"or set fallback=empty (or fallback=<text>) in the replay expert's model_args."
            )
        if self.fallback_docs:
            logger.warning("replay: %d document(s) were not recorded and got the fallback answer %r",
                           len(self.fallback_docs), self.fallback)
        return answers

    def _answer(self, request: ReplayRequest, recorded: RecordedDoc) -> Any:
        if recorded.is_record:
            return self._answer_from_record(request, recorded)
        chosen = self._match(request, recorded)
        if chosen is None:
            raise RecordsError(
                f"replay: document {request.doc_id} of task {request.task!r} is recorded in {recorded.source}, "
                f"but without a {request.request_type} request #{request.index}"
                f"{f' for continuation {request.continuation!r}' if request.continuation is not None else ''}. "
                f"Replay a log of the same task configuration (same output type and choices)."
            )
        if chosen.context is not None and request.context is not None and chosen.context != request.context:
            self.context_mismatches += 1
            if self.context_mismatches == 1:
                logger.warning("replay: the recorded prompt of document %s (%s) differs from this run's prompt; "
                               "the recorded answer is replayed anyway", request.doc_id, request.task)
        slot = (request.task, str(request.doc_id), request.request_type, request.index)
        repeat = self._served[slot]
        self._served[slot] += 1
        value = chosen.responses[repeat % len(chosen.responses)] if chosen.responses else None
        if request.request_type == "generate_until":
            return "" if value is None else str(value)
        if request.request_type == "loglikelihood":
            parsed = as_loglikelihood(value)
            if parsed is None:
                raise RecordsError(f"replay: recorded response {value!r} of document {request.doc_id} ({request.task}) "
                                   f"is not a log-likelihood; the log is of a generation task.")
            return parsed
        parsed = as_loglikelihood(value)
        return parsed[0] if parsed else float(value)

    @staticmethod
    def _match(request: ReplayRequest, recorded: RecordedDoc) -> RecordedRequest | None:
        requests = recorded.requests
        if request.index < len(requests):
            candidate = requests[request.index]
            if request.continuation is None or candidate.continuation in (None, request.continuation):
                return candidate
        if request.continuation is not None:
            return next((r for r in requests if r.continuation == request.continuation), None)
        return requests[0] if len(requests) == 1 and request.request_type == "generate_until" else None

    def _answer_from_record(self, request: ReplayRequest, recorded: RecordedDoc) -> Any:
        if request.request_type == "generate_until":
            return self.book.record_generation(recorded, request.doc)
        if request.request_type == "loglikelihood":
            if recorded.answer in (None, ""):
                self.unanswered_choices += 1
                if self.unanswered_choices == 1:
                    logger.warning("replay: %s records a question with no extracted answer; as multiple choice all its "
                                   "choices get -inf and the harness picks the first one", recorded.source)
            chosen = recorded.answer is not None and (request.continuation or "").strip() == str(recorded.answer).strip()
            return (0.0, True) if chosen else (NEG_INF, False)
        raise RecordsError(f"replay: record files hold no log-likelihoods, so {request.request_type} requests "
                           f"(task {request.task!r}) cannot be replayed from {recorded.source}. Replay an lm-eval "
                           f"--log_samples file of that task instead.")


REPLAY_ARGS = {
    "log": "harness --log_samples JSONL file(s) or folder",
    "records": "benchmark record JSONL file(s) (question_id/id, pred, generated_text)",
    "key": "document field to look recordings up by (default: (task, doc_id) for logs, question_id/id for records)",
    "task_key": "alias of key",
    "task": "task name for log files not named samples_<task>_<date>.jsonl",
    "replay": "records: 'answer' (template with the extracted answer) or 'text' (raw output)",
    "template": f"records, replay=answer: the generation, default {DEFAULT_TEMPLATE!r}",
    "fallback": "answer for unrecorded documents: unset (error), 'empty', or a text",
    "no_answer": "records, replay=answer, no extracted answer: 'text' (a sentence no filter matches) or "
                 "'wrong_letter' (the first option letter that is not the document's answer)",
}
HARNESS_ARGS = ("batch_size", "max_batch_size", "device")
REPLAY_MODEL = "coe_replay"  # the replay model's name in both harnesses


def check_replay_options(log: Any, records: Any, replay: str | None, template: str, no_answer: str) -> None:
    if (log is None) == (records is None):
        raise ConfigError("a replay expert needs exactly one of log=<samples JSONL file or folder> "
                          "or records=<record JSONL file>, e.g. model_args: {records: path/model.jsonl.gz}.")
    if replay is not None and replay not in REPLAY_MODES:
        raise ConfigError(f"replay={replay!r} must be one of {REPLAY_MODES}.")
    if no_answer not in NO_ANSWER_MODES:
        raise ConfigError(f"no_answer={no_answer!r} must be one of {NO_ANSWER_MODES}.")
    if "{answer}" not in template:
        raise ConfigError(f"template={template!r} must contain '{{answer}}', e.g. {DEFAULT_TEMPLATE!r}.")


def replay_args(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """A replay model's own model_args (harness extras dropped), checked without reading any file."""
    args = {k: v for k, v in model_args.items() if k not in HARNESS_ARGS}
    unknown = sorted(set(args) - set(REPLAY_ARGS))
    if unknown:
        allowed = ", ".join(f"{k} ({v})" for k, v in REPLAY_ARGS.items())
        raise ConfigError(f"replay model: unknown model_args {unknown}. Allowed: {allowed}.")
    if args.get("key") and args.get("task_key") and args["key"] != args["task_key"]:
        raise ConfigError("replay model: give key or task_key, not both with different values.")
    check_replay_options(args.get("log"), args.get("records"), args.get("replay"),
                         str(args.get("template", DEFAULT_TEMPLATE)), str(args.get("no_answer", "text")))
    return args


def resolve_replay_paths(model_args: Mapping[str, Any], folder_of: Callable[[str], Path]) -> dict[str, Any]:
    """``model_args`` with its ``log``/``records`` paths (files, folders or globs) read relative to
    ``folder_of(key)``, and checked to name JSONL files; a ConfigError otherwise."""
    args = replay_args(model_args)
    key = "log" if args.get("log") is not None else "records"
    value = args[key]
    if not isinstance(value, (str, os.PathLike, list)) or isinstance(value, list) and not all(
            isinstance(item, (str, os.PathLike)) for item in value):
        raise ConfigError(f"{key}={value!r} must be a path, a glob or a list of them.")
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    resolved = []
    for item in items:
        path = Path(item).expanduser()
        if not path.is_absolute():
            path = folder_of(key) / path
        files = expand_paths(path, key, samples_only=key == "log")
        if key == "records":
            check_first_record(files[0], args)
        resolved.append(str(path.resolve()) if path.exists() else str(path))
    return {**model_args, key: resolved[0] if isinstance(value, (str, os.PathLike)) else resolved}


def check_first_record(path: Path, args: Mapping[str, Any]) -> None:
    """The first record of a records file has the key field and what ``replay`` answers from, so a wrong
    ``key=`` or ``replay=`` stops the run before any expert loads (the rest is read when the expert loads)."""
    try:
        first = next(_rows(path), None)
    except (OSError, ValueError) as error:
        raise ConfigError(f"records={str(path)!r} cannot be read ({error}).") from None
    if first is None:
        raise ConfigError(f"records={str(path)!r} holds no records.")
    key = args.get("key") or args.get("task_key")
    keys = [key] if key else list(RECORD_KEY_FIELDS)
    if not any(k in first for k in keys):
        raise ConfigError(f"records={str(path)!r}: the first record has none of the key fields {keys} (its fields: "
                          f"{sorted(first)}). Pass key=<field> in model_args.")
    needs = {"answer": RECORD_ANSWER_FIELDS, "text": RECORD_TEXT_FIELDS}.get(args.get("replay") or "")
    if needs and not any(f in first for f in needs):
        raise ConfigError(f"records={str(path)!r}: replay={args['replay']} needs one of the fields {list(needs)}; the "
                          f"first record has {sorted(first)}.")


def answerer_from_model_args(**model_args: Any) -> ReplayAnswerer:
    """A ``ReplayAnswerer`` from a replay model's model_args (harness extras are ignored)."""
    args = replay_args(model_args)
    book = ReplayBook(log=args.get("log"), records=args.get("records"), key=args.get("key") or args.get("task_key"),
                      task=args.get("task"), replay=args.get("replay"),
                      template=str(args.get("template", DEFAULT_TEMPLATE)), no_answer=str(args.get("no_answer", "text")))
    logger.info("replay: %s", book.describe())
    return ReplayAnswerer(book, args.get("fallback"))
