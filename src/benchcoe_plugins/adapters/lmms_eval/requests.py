"""lmms-eval request shapes and the conversions between them.

lmms-eval builds a request's ``args`` from the model's kind (see HARNESS_NOTES):

    simple generate_until              (ctx, gen_kwargs, doc_to_visual, doc_id, task, split)
    simple loglikelihood               (ctx, target, doc_to_visual, doc_id, task, split)
    simple generate_until_multi_round  (ctx, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split)
    chat generate_until (+multi_round) (ctx, doc_to_messages, gen_kwargs, doc_id, task, split)

``target`` is a string or a function of the document. A request can be rewritten for an
expert of the other kind (generate_until only), or for a text-only lm-eval model, which
receives ``ctx`` (the task's text prompt) without images.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from lmms_eval.api.instance import GenerationResult

from benchcoe_plugins.experts.sampling import seed_if_sampling

SIMPLE, CHAT, TEXT = "simple", "chat", "text"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
# lmms-eval generation kwargs -> lm-eval's (HFLM, vLLM) names; others are dropped for text experts.
TEXT_GEN_KWARGS = {"max_new_tokens": "max_gen_toks", "until": "until", "do_sample": "do_sample",
                   "temperature": "temperature", "top_p": "top_p"}


@dataclass(frozen=True)
class RequestView:
    """The harness-independent parts of one lmms-eval request."""

    kind: str
    request_type: str
    context: str
    doc_id: Any
    task: str
    split: str | None
    gen_kwargs: dict | None = None
    doc_to_visual: Callable | None = None
    doc_to_messages: Callable | None = None
    target: Any = None


def view(request: Any, kind: str) -> RequestView:
    """Reads ``request.args`` as built for a model of ``kind`` (simple or chat)."""
    args, rtype = request.args, request.request_type
    if kind == CHAT:
        ctx, doc_to_messages, gen_kwargs, doc_id, task, split = args
        return RequestView(CHAT, rtype, ctx, doc_id, task, split, gen_kwargs, doc_to_messages=doc_to_messages)
    if rtype == "loglikelihood":
        ctx, target, doc_to_visual, doc_id, task, split = args
        return RequestView(SIMPLE, rtype, ctx, doc_id, task, split, doc_to_visual=doc_to_visual, target=target)
    if rtype == "generate_until_multi_round":
        ctx, gen_kwargs, doc_to_visual, _doc_to_text, doc_id, task, split = args
    else:
        ctx, gen_kwargs, doc_to_visual, doc_id, task, split = args
    return RequestView(SIMPLE, rtype, ctx, doc_id, task, split, gen_kwargs, doc_to_visual=doc_to_visual)


def _content_of(visual: Any) -> dict[str, Any]:
    if isinstance(visual, str) and visual.lower().endswith(VIDEO_SUFFIXES):
        return {"type": "video", "url": visual}
    if isinstance(visual, dict) and "array" in visual:
        return {"type": "audio", "url": visual}
    return {"type": "image", "url": visual}


class MessagesFromVisuals:
    """``doc_to_messages`` for a simple request: one user turn, its visuals then its text."""

    def __init__(self, doc_to_visual: Callable, text: str) -> None:
        self.doc_to_visual = doc_to_visual
        self.text = text

    def __call__(self, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        content = [_content_of(v) for v in (self.doc_to_visual(doc) or [])]
        content.append({"type": "text", "text": self.text})
        return [{"role": "user", "content": content}]


class VisualsFromMessages:
    """``doc_to_visual`` for a chat request whose task object is not reachable."""

    def __init__(self, doc_to_messages: Callable) -> None:
        self.doc_to_messages = doc_to_messages

    def __call__(self, doc: Mapping[str, Any]) -> list[Any]:
        return [part["url"] for part in message_parts(self.doc_to_messages(doc)) if part.get("type") != "text"]


def message_parts(messages: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, Mapping))
        elif isinstance(content, str):
            parts.append({"type": "text", "text": content})
    return parts


def visuals_of(request_view: RequestView, doc: Mapping[str, Any]) -> list[Any]:
    """The images / videos / audio the request carries for ``doc``."""
    if request_view.doc_to_visual is not None:
        return list(request_view.doc_to_visual(doc) or [])
    return VisualsFromMessages(request_view.doc_to_messages)(doc)


def doc_to_visual_of(request_view: RequestView) -> Callable:
    """The task's own ``doc_to_visual`` when the chat request's ``doc_to_messages`` is a task method."""
    if request_view.doc_to_visual is not None:
        return request_view.doc_to_visual
    task_object = getattr(request_view.doc_to_messages, "__self__", None)
    own = getattr(task_object, "doc_to_visual", None)
    return own if callable(own) else VisualsFromMessages(request_view.doc_to_messages)


def target_text(request_view: RequestView, doc: Mapping[str, Any]) -> str:
    target = request_view.target
    return target(doc) if callable(target) else str(target)


def to_simple_args(request_view: RequestView) -> tuple:
    return (request_view.context, request_view.gen_kwargs, doc_to_visual_of(request_view), request_view.doc_id,
            request_view.task, request_view.split)


def to_chat_args(request_view: RequestView) -> tuple:
    messages = request_view.doc_to_messages or MessagesFromVisuals(request_view.doc_to_visual, request_view.context)
    return (request_view.context, messages, request_view.gen_kwargs, request_view.doc_id, request_view.task,
            request_view.split)


def text_gen_kwargs(gen_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """lmms-eval generation kwargs in lm-eval's names (max_new_tokens -> max_gen_toks)."""
    converted = {TEXT_GEN_KWARGS[k]: v for k, v in (gen_kwargs or {}).items() if k in TEXT_GEN_KWARGS}
    if not converted.get("do_sample") and converted.get("temperature", 0) in (0, 0.0, None):
        converted.pop("temperature", None)
        converted["do_sample"] = False
    converted.setdefault("until", [])
    return converted


def text_prompt(request_view: RequestView, doc: Mapping[str, Any]) -> str:
    """The text a text-only expert reads: ``ctx``, else the text parts of the chat messages."""
    if isinstance(request_view.context, str) and request_view.context:
        return request_view.context
    parts = message_parts(request_view.doc_to_messages(doc)) if request_view.doc_to_messages else []
    return "\n".join(p["text"] for p in parts if p.get("type") == "text")


def plain_answer(answer: Any) -> Any:
    """An expert's answer as plain data: the text of a ``GenerationResult`` (what lmms-eval's chat models
    return), as lmms-eval's own response cache keeps it; its token counts describe one generation. A list
    (one result per round of a multi-round request) becomes the list of their texts."""
    if isinstance(answer, list):
        return [plain_answer(item) for item in answer]
    return answer.text if isinstance(answer, GenerationResult) else answer


def document_of_args(args: tuple) -> tuple[str, str, str]:
    """(doc_id, task, split) of an lmms-eval request of any kind: its last three arguments."""
    return tuple(str(value) for value in args[-3:])  # type: ignore[return-value]


def kind_of_args(args: tuple) -> str:
    """Which kind of model an lmms-eval request was built for, from where its callable sits."""
    return SIMPLE if callable(args[2]) else CHAT


def visual_fingerprint(visual: Any) -> bytes:
    """Bytes that change when the visual does: an image's pixels, a file's path, size and modification
    time (videos are large), an audio array's samples; anything else by its repr."""
    from PIL import Image

    if isinstance(visual, Image.Image):
        return f"image {visual.mode} {visual.size} ".encode() + visual.tobytes()
    if isinstance(visual, dict) and "array" in visual:
        import numpy as np

        return f"audio {visual.get('sampling_rate')} ".encode() + np.asarray(visual["array"]).tobytes()
    if isinstance(visual, (bytes, bytearray)):
        return b"bytes " + bytes(visual)
    if isinstance(visual, str) and os.path.isfile(visual):
        stat = os.stat(visual)
        return f"file {os.path.realpath(visual)} {stat.st_size} {stat.st_mtime_ns}".encode()
    return f"other {visual!r}".encode()


def visuals_digest(visuals: list[Any]) -> str:
    """One hash of a request's visuals, in order (empty: the hash of nothing)."""
    digest = hashlib.sha256()
    for visual in visuals:
        part = visual_fingerprint(visual)
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def request_key(request_type: str, request: Any, visuals: str | None = None) -> str:
    """Identity of a request inside one expert's result store: everything but the callables, and the
    digest of the visuals they give (``visuals``): the text alone would serve an answer about other
    images (a dataset copy with other images under the same task name)."""
    args = [a for a in request.args if not callable(a)]
    payload = [request_type, getattr(request, "task_name", None), str(getattr(request, "doc_id", None)),
               getattr(request, "idx", 0), args, seed_if_sampling(args)]
    if visuals is not None:
        payload.append(visuals)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()
