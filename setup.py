"""Build hook: put ``benchcoe_plugins.pth`` at the site-packages root.

lm-eval reads no entry points for models, so the ``coe`` model is registered by a
one-line ``.pth`` file that installs a lazy import hook (see
``src/benchcoe_plugins/adapters/lm_eval/registration.py``). setup.cfg cannot place a
file outside the package, so ``build_py`` writes it next to the packages: into
``build_lib`` for a regular wheel, and into the editable wheel's root (the install
directory setuptools configures for PEP 660 builds) for ``pip install -e``. Either way it
is listed in the wheel's RECORD, so ``pip uninstall`` removes it. Regular installs also
get copies of ``router_ckpts/`` and ``tasks/`` under ``benchcoe_plugins/data/``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Shipped folders at the repository root, copied into the package for regular installs.
SHIPPED_FOLDERS = ("router_ckpts", "tasks")
PTH_NAME = "benchcoe_plugins.pth"
# The .pth line site.py executes at start-up: a finder that imports nothing and wakes up
# only for lm-eval's registry (see adapters/lm_eval/registration.py). Inline, because
# importing a module here would cost a site-packages scan in every interpreter.
FINDER_SOURCE = (
    "class BenchCoEWatcher:\n"
    " def find_spec(self, name, path=None, target=None):\n"
    "  if name != 'lm_eval.api.registry': return None\n"
    "  from benchcoe_plugins.adapters.lm_eval.registration import watched_spec\n"
    "  return watched_spec(self, name)\n"
    "sys.meta_path.insert(0, BenchCoEWatcher())\n"
)
PTH_LINE = f"import sys; exec({FINDER_SOURCE!r}, {{'sys': sys}})\n"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            target_dir = Path(self.get_finalized_command("install").install_lib)
        else:
            target_dir = Path(self.build_lib)
        target_dir.mkdir(parents=True, exist_ok=True)
        (target_dir / PTH_NAME).write_text(PTH_LINE)
        if not getattr(self, "editable_mode", False):
            for folder in SHIPPED_FOLDERS:
                if not (HERE / folder).is_dir():
                    continue
                destination = Path(self.build_lib) / "benchcoe_plugins" / "data" / folder
                shutil.rmtree(destination, ignore_errors=True)
                shutil.copytree(HERE / folder, destination, ignore=shutil.ignore_patterns("__pycache__"))

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / PTH_NAME))
            for folder in SHIPPED_FOLDERS:
                root = Path(self.build_lib) / "benchcoe_plugins" / "data" / folder
                outputs.extend(str(p) for p in root.rglob("*") if p.is_file())
        return outputs


setup(cmdclass={"build_py": BuildPyWithPth})
