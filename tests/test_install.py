"""``pip install .`` and ``pip install -e .`` register ``coe`` with the unchanged lm-eval,
keep the stock models, import nothing heavy at start-up, and ``pip uninstall`` removes it.

Each case builds a child virtual environment that sees this environment's packages
through a path entry (whose ``.pth`` files are therefore NOT executed), installs the
project into it without dependencies, and asks lm-eval's own registry.
"""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

PROBE = (
    "import sys\n"
    "heavy = [m for m in ('torch', 'lm_eval', 'transformers') if m in sys.modules]\n"
    "from lm_eval.api.registry import get_model, model_registry\n"
    "resolved = []\n"
    "for name in ('hf', 'coe'):\n"
    "    try:\n"
    "        resolved.append(get_model(name).__name__)\n"
    "    except ValueError:\n"
    "        resolved.append(None)\n"
    "print(heavy, resolved, [n for n in ('vllm', 'coe_replay') if n in model_registry])\n"
)


def make_child_env(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    child_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    parent_paths = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(child_site, "_parent_env.pth").write_text("\n".join(dict.fromkeys(parent_paths)) + "\n")
    return python


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True,
                   capture_output=True, text=True, cwd=REPO)


def probe(python: Path) -> str:
    result = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, cwd=REPO.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_registers_and_uninstall_removes(tmp_path: Path, editable: bool) -> None:
    python = make_child_env(tmp_path / "venv")
    target = ["-e", str(REPO)] if editable else [str(REPO)]
    pip(python, "install", "--no-deps", "--no-build-isolation", *target)
    assert probe(python) == "[] ['HFLM', 'CoELM'] ['vllm', 'coe_replay']"
    pip(python, "uninstall", "-y", "benchcoe-plugins")
    assert probe(python) == "[] ['HFLM', None] ['vllm']"
