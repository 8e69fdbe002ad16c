"""What each expert really spent in a run: requests, generated tokens, wall seconds."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Sequence

from benchcoe_plugins.experts.isolated import IsolatedExpert


def generated_tokens(model: Any, answers: Sequence[Any]) -> tuple[int, str]:
    """(token count of the string answers, how they were counted): the answer text re-tokenised by the
    expert's own tokenizer where it exposes one, else whitespace-separated words (isolated experts, and
    tokenizers whose ``encode`` fails on them). Counting never fails a run."""
    texts = [t for a in answers for t in (a if isinstance(a, list) else [a]) if isinstance(t, str)]  # multi-round: a list
    tokenizer = getattr(model, "tokenizer", None)
    # tiktoken's and lm-eval's remote tokenizers take the text alone (TypeError on the keyword)
    for keywords in ({"add_special_tokens": False}, {}) if callable(getattr(tokenizer, "encode", None)) else ():
        try:
            return sum(len(tokenizer.encode(t, **keywords)) for t in texts), "tokenizer"
        except TypeError:
            continue
        except Exception:  # noqa: BLE001 - a count is not worth an answer
            break
    return sum(len(t.split()) for t in texts), "whitespace words"


class SpendMeter:
    """Per expert: requests answered by the model (not from a result store), tokens, seconds, and the
    process that answered them (``harness``, or ``worker <pid>`` for an isolated expert)."""

    def __init__(self) -> None:
        self.experts: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"requests": 0, "generated_tokens": 0, "wall_seconds": 0.0, "tokens_counted_as": None,
                     "process": None})

    def timed(self) -> float:
        return time.perf_counter()

    def add(self, expert: str, model: Any, request_type: str, answers: Sequence[Any], started: float) -> None:
        row = self.experts[expert]
        row["process"] = f"worker {model.process.pid}" if isinstance(model, IsolatedExpert) else "harness"
        row["wall_seconds"] += time.perf_counter() - started
        row["requests"] += len(answers)
        if request_type == "generate_until":
            tokens, counted_as = generated_tokens(model, answers)
            row["generated_tokens"] += tokens
            row["tokens_counted_as"] = counted_as

    def record(self) -> dict[str, dict[str, Any]]:
        return {name: {**row, "wall_seconds": round(row["wall_seconds"], 3)} for name, row in sorted(self.experts.items())}
