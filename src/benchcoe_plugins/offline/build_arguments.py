"""Command line of the ``tasks/*/build.py`` scripts that rebuild a shipped offline copy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from benchcoe_plugins.core.errors import BenchCoEError


def parse_build_arguments(description: str, data: Path, out: Path) -> argparse.Namespace:
    """``--data`` (the shared records folder) and ``--out`` (where the copy is written)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--out", type=Path, default=out)
    return parser.parse_args()


def run_build(main: Callable[[], None]) -> None:
    """Runs a build script's ``main``; a records folder it cannot read is one line and exit 2."""
    try:
        main()
    except BenchCoEError as error:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {str(error).rstrip('.')}. Pass --data <folder holding questions.jsonl.gz and "
                 f"records/>, e.g. ../shared/data/<dataset>.")
