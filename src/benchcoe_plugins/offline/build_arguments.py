"""Command line of the ``tasks/*/build.py`` scripts that rebuild a shipped offline copy."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_build_arguments(description: str, data: Path, out: Path) -> argparse.Namespace:
    """``--data`` (the shared records folder) and ``--out`` (where the copy is written)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--out", type=Path, default=out)
    return parser.parse_args()
