"""Registers ``coe`` and ``coe_replay`` with lm-eval once lm-eval's registry is imported.

lm-eval reads no entry points for models. ``benchcoe_plugins.pth`` (written by setup.py)
puts a tiny meta-path finder on ``sys.meta_path`` at interpreter start-up; it imports
nothing and reacts only to ``lm_eval.api.registry``, handing over to ``watched_spec``
here. Once the registry module has executed, ``register_models`` fills it with lm-eval's
own models first (``get_model`` imports ``lm_eval.models`` only while the registry is
empty, so registering into an empty registry would hide ``hf``, ``vllm``, ...) and then
adds ours as lazy ``"module:Class"`` strings, which import nothing until used.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from typing import Any

WATCHED_MODULE = "lm_eval.api.registry"
MODELS = {
    "coe": "benchcoe_plugins.adapters.lm_eval.coe_lm:CoELM",
    "coe_replay": "benchcoe_plugins.adapters.lm_eval.replay_lm:ReplayLM",
}


def register_models() -> None:
    import lm_eval.models  # noqa: F401  (stock models first, see module docstring)
    from lm_eval.api.registry import model_registry

    for name, target in MODELS.items():
        if name not in model_registry:
            model_registry.register(name, target=target)


def watched_spec(finder: Any, fullname: str) -> ModuleSpec | None:
    """The real spec of the registry module, whose loader also runs ``register_models``."""
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    spec = importlib.util.find_spec(fullname)
    if spec is None or spec.loader is None:
        return spec
    exec_registry = spec.loader.exec_module

    def exec_module(module: Any) -> None:
        exec_registry(module)
        try:
            register_models()
        except Exception as error:  # never break lm-eval itself
            print(f"benchcoe_plugins: could not register the coe model with lm-eval: {error!r}", file=sys.stderr)

    spec.loader.exec_module = exec_module
    return spec
