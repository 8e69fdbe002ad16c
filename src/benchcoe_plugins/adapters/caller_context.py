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


def results_folder(tracker: Any, harness: str) -> Path | None:
    """The folder where the harness's evaluation tracker writes the results JSON: ``<output_path>/<model>``,
    except that lm-eval writes ``<stem>_<date>.json`` beside an ``--output_path`` ending in ``.json``."""
    if tracker is None or not getattr(tracker, "output_path", None):
        return None
    folder = Path(tracker.output_path)
    if harness == "lm_eval" and folder.suffix == ".json":
        return folder.parent
    return folder / str(tracker.general_config_tracker.model_name_sanitized or "")


def routing_log_beside(tracker: Any, harness: str) -> Path | None:
    """``routing_<date>.jsonl`` in :func:`results_folder`."""
    folder = results_folder(tracker, harness)
    return folder / f"routing_{datetime.now().isoformat().replace(':', '-')}.jsonl" if folder else None


def name_output_folder(tracker: Any, name: str) -> None:
    """Make the harness write results under ``<output_path>/<name>/`` (not a random or config-file name)."""
    if tracker is None:
        return
    general = tracker.general_config_tracker
    general.model_name = name
    general.model_name_sanitized = re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def record_paths(tracker: Any, harness: str, name: str, routing_log: Path | None) -> tuple[Path | None, Path | None]:
    """Names the results folder after the CoE; returns the routing log (``routing_log`` when the config
    sets one) and the folder the router copy goes to: the results JSON's own, where ``benchcoe rerun``
    looks for it."""
    name_output_folder(tracker, name)
    path = routing_log or routing_log_beside(tracker, harness)
    return path, results_folder(tracker, harness) or (path.parent if path else None)
