"""Reading JSON-lines files, plain or gzip-compressed (records, sample logs, routing logs)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

from benchcoe_plugins.core.errors import RecordsError


def read_jsonl(path: Path) -> Iterator[Any]:
    """The JSON value of every non-blank line; ``.gz`` files are decompressed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except (json.JSONDecodeError, RecursionError) as error:
                        raise RecordsError(f"{path}:{number} is not JSON ({error or 'nested too deeply'}). "
                                           f"Pass JSON-lines files.") from None
    except (OSError, EOFError, zlib.error) as error:
        raise RecordsError(f"cannot read {path}: {error}") from None
    except UnicodeDecodeError as error:
        raise RecordsError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}).") from None
