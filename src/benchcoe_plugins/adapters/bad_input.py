"""Bad input under a harness CLI: one clear line and a non-zero exit, not a traceback.

Both harnesses print a traceback for any exception a model raises (lmms-eval even goes on
and exits 0). Raised from inside the harness CLI, this package's errors become a
``SystemExit`` carrying the message: Python prints that one line and exits 1, and neither
harness catches it (both catch ``Exception`` only). Called as a library (tests, notebooks)
the original exception propagates, and ``BENCHCOE_DEBUG=1`` always keeps the traceback.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from benchcoe_plugins.core.errors import DEBUG_ENV, BenchCoEError, debugging

# files of the harness command-line entry points, as they appear in stack frames
CLI_FILES = ("lm_eval/__main__.py", "lm_eval/_cli/", "lmms_eval/__main__.py")


class BadInputExit(SystemExit):
    """A BenchCoEError turned into the process's exit message."""


def under_harness_cli() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename.replace(os.sep, "/")
        if any(marker in filename for marker in CLI_FILES):
            return True
        frame = frame.f_back
    return False


@contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except BenchCoEError as error:
        if debugging() or not under_harness_cli():
            raise
        raise BadInputExit(f"benchcoe: error: {error} (set {DEBUG_ENV}=1 for a traceback)") from None
