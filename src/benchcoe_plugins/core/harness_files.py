"""The file names the harnesses give their ``--log_samples`` output, and the task each one names."""

from __future__ import annotations

import re
from pathlib import Path

LM_EVAL_SAMPLES = re.compile(r"^samples_(?P<task>.+)_\d{4}-\d{2}-\d{2}T[0-9\-.]+\.jsonl(\.gz)?$")  # samples_<task>_<date>
LMMS_EVAL_SAMPLES = re.compile(r"^.*?_samples_(?P<task>.+)\.jsonl(\.gz)?$")  # <date>_samples_<task>


def task_from_filename(path: Path) -> str | None:
    """The task of a harness samples file, or None when ``path`` is not named like one."""
    for pattern in (LM_EVAL_SAMPLES, LMMS_EVAL_SAMPLES):
        match = pattern.match(path.name)
        if match:
            return match.group("task")
    return None
