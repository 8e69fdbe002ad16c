"""Errors raised before any expensive work starts; each names the problem and the fix."""


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
