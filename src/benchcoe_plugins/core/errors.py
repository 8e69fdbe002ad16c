"""Errors raised before any expensive work starts; each names the problem and the fix.

Command lines print them as one line; ``BENCHCOE_DEBUG=1`` shows the traceback instead.
"""

import os

DEBUG_ENV = "BENCHCOE_DEBUG"


def debugging() -> bool:
    """Whether BENCHCOE_DEBUG asks for tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def brief(error: BaseException, limit: int = 300) -> str:
    """An error as a short clause for a one-line message: its type and text, cut at ``limit``
    characters (a decode error's repr carries the whole undecodable file)."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class BenchCoEError(Exception):
    """Base class of this package's errors."""


class ConfigError(BenchCoEError, ValueError):
    """The CoE config file (or a model_args override) is invalid."""


class RouterFormatError(BenchCoEError, ValueError):
    """A router checkpoint folder is missing, corrupt, or of another format version."""


class RecordsError(BenchCoEError, ValueError):
    """Benchmark records or sample logs cannot be used as given."""


class RoutingError(BenchCoEError, ValueError):
    """A document cannot be routed (e.g. it lacks the configured question field)."""


class ExpertError(BenchCoEError, RuntimeError):
    """An expert failed; finished experts' results are kept on disk for a rerun."""
