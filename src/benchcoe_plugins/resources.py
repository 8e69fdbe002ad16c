"""Where shipped files live: ``router_ckpts/`` and ``tasks/``.

In a source checkout (and an editable install) they are the repository's top-level
folders; a regular install carries copies inside the package under ``data/``
(``setup.py`` puts them there).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``resource_dir("tasks")`` -> the shipped ``tasks`` folder; raises FileNotFoundError."""
    for candidate in (PACKAGE_DIR / "data" / name, PACKAGE_DIR.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"benchcoe_plugins: shipped folder {name!r} not found (broken install?)")
