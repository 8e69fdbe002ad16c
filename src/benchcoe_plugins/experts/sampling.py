"""The part of a request's cache key that only sampled generation needs: the harness seed.

Greedy answers depend on the request alone; sampled ones also on the random state the
harness seeded (``--seed``), so a sampled run with another seed must not be served the
first run's answers.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Mapping


def samples(generation_kwargs: Mapping[str, Any]) -> bool:
    """Whether generation with these kwargs draws at random (HF and vLLM conventions)."""
    do_sample = generation_kwargs.get("do_sample")
    if do_sample is not None:
        return bool(do_sample)
    temperature = generation_kwargs.get("temperature")
    return isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0


def harness_seed() -> int | None:
    """The seed the harness gave torch (both harnesses call ``torch.manual_seed(--seed)``)."""
    torch = sys.modules.get("torch")
    return int(torch.initial_seed()) if torch is not None else None


def seed_if_sampling(arguments: Iterable[Any]) -> dict[str, Any]:
    """``{"seed": ...}`` when any generation-kwargs mapping among ``arguments`` samples, else ``{}``."""
    if any(isinstance(a, Mapping) and samples(a) for a in arguments):
        return {"seed": harness_seed()}
    return {}
