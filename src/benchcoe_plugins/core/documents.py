"""What a router sees of a document: its task, id, fields and the question text."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from benchcoe_plugins.core.errors import RoutingError

# Where each stock task keeps its subject. ``pattern`` extracts it from the field's value.
DEFAULT_SUBJECT_RULES: list[dict[str, str]] = [
    {"task": "mmlu_pro*", "field": "category"},
    {"task": "leaderboard_mmlu_pro*", "field": "category"},
    {"task": "mmmu*", "field": "id", "pattern": r"^(?:validation|test|dev)_(.+)_\d+$"},
    {"task": "mmstar*", "field": "category"},
    {"task": "scienceqa*", "field": "subject"},
    {"task": "*", "field": "subject"},
    {"task": "*", "field": "category"},
]


def normalize_subject(subject: str) -> str:
    """``"Computer_Science"`` and ``"computer science"`` are the same subject."""
    return re.sub(r"[\s_]+", " ", str(subject).strip().lower())


@dataclass(frozen=True)
class RoutingDocument:
    task: str
    doc_id: int | str
    text: str
    doc: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    has_image: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, str(self.doc_id))


# what the router reads of a document when the config names no question field, in this order, joined;
# training from sample logs reads the same (training/sample_logs.py), so both see one text
DEFAULT_QUESTION_FIELDS = ("question", "query", "problem", "input", "text")


def question_text(doc: Mapping[str, Any], fields: Sequence[str], fallback: str | None, task: str,
                  doc_id: Any) -> str:
    """The configured question field(s) of ``doc``, joined; else the request context."""
    parts = [str(doc[name]) for name in fields if isinstance(doc, Mapping) and doc.get(name) not in (None, "")]
    if parts:
        return "\n".join(parts)
    if fallback is not None:
        return fallback
    raise RoutingError(
        f"document {doc_id} of task {task!r} has none of the question fields {list(fields)} "
        f"(its fields: {sorted(doc) if isinstance(doc, Mapping) else type(doc).__name__}). "
        f"Set question_field: {{{task}: <field>}} in the config."
    )


def subject_of(task: str, doc: Mapping[str, Any], rules: Iterable[Mapping[str, str]] = DEFAULT_SUBJECT_RULES) -> str | None:
    """The document's subject by the first matching rule, normalized; None if no rule applies."""
    for rule in rules:
        if not fnmatch.fnmatchcase(task, rule.get("task", "*")):
            continue
        value = doc.get(rule["field"]) if isinstance(doc, Mapping) else None
        if value in (None, ""):
            continue
        value = str(value)
        if rule.get("pattern"):
            match = re.match(rule["pattern"], value)
            if not match:
                continue
            value = match.group(1)
        return normalize_subject(value)
    return None
