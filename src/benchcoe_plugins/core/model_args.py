"""Parse ``key=value,key=value`` strings the way the harnesses' ``--model_args`` do.

Commas split only outside quotes and brackets, the first ``=`` separates key and value,
and values go through ``ast.literal_eval`` (a value that is not a Python literal stays a
string), so ``"pretrained=/m,dtype=float32,max_length=512"`` gives a str, a str, an int.
"""

from __future__ import annotations

import ast
from typing import Any

_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    closers: list[str] = []
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in _OPENERS:
            closers.append(_OPENERS[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_value(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return raw


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}``; raises ValueError on an item without ``=``."""
    if not text:
        return {}
    parsed: dict[str, Any] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"model_args item {item!r} is not of the form key=value")
        parsed[key.strip()] = parse_value(value.strip())
    return parsed
