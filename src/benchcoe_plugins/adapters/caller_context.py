"""Read the harness evaluator's local state from the call stack.

The harnesses call a model once per request type and never tell it what else is coming,
nor where results will be written. Both facts are locals of the evaluator that called
us: ``requests`` (every request type of the run) and ``evaluation_tracker`` (the output
folder). Reading them lets a CoE load each expert once per run and write its routing log
beside the harness output. Where they are not found (another caller), the CoE still
works: it answers one request type at a time and writes the log only where configured.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable


def find_caller_local(name: str, module_prefix: str, accept: Callable[[Any], bool] = lambda value: True) -> Any:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(module_prefix) and name in frame.f_locals:
            value = frame.f_locals[name]
            if accept(value):
                return value
        frame = frame.f_back
    return None


def routing_log_beside(tracker: Any) -> Path | None:
    """``routing_<date>.jsonl`` in the folder where the harness's evaluation tracker writes results."""
    if tracker is None or not getattr(tracker, "output_path", None):
        return None
    folder = Path(tracker.output_path)
    if folder.suffix == ".json":
        folder = folder.parent
    folder = folder / str(tracker.general_config_tracker.model_name_sanitized or "")
    return folder / f"routing_{datetime.now().isoformat().replace(':', '-')}.jsonl"


def name_output_folder(tracker: Any, name: str) -> None:
    """Make the harness write results under ``<output_path>/<name>/`` (not a random or config-file name)."""
    if tracker is None:
        return
    general = tracker.general_config_tracker
    general.model_name = name
    general.model_name_sanitized = re.sub(r"[^A-Za-z0-9._+-]+", "_", name)
