"""Registers ``coe`` and ``coe_replay`` with lm-eval, lazily, from a ``.pth`` line.

lm-eval has no plugin discovery for models, so this module is imported at interpreter
start-up by ``benchcoe_plugins.pth``. It imports only ``sys``, adds a meta-path finder,
and does nothing else until ``lm_eval.api.registry`` is imported. Then it fills the
registry with lm-eval's own models first (``get_model`` only imports ``lm_eval.models``
while the registry is empty, so registering into an empty registry would hide ``hf``,
``vllm``, ...) and adds ours as lazy ``"module:Class"`` strings, which import nothing.
"""

import sys

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


class _RegistryWatcher:
    """Meta-path finder that runs ``register_models`` once the registry module exists."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != WATCHED_MODULE:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            try:
                register_models()
            except Exception as error:  # never break lm-eval itself
                print(f"benchcoe_plugins: could not register the coe model with lm-eval: {error!r}", file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if WATCHED_MODULE in sys.modules:
        register_models()
    elif not any(isinstance(finder, _RegistryWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegistryWatcher())
