"""lmms-eval entry point ``lmms_eval.models``: the ``coemodel`` and ``coe_replay`` manifests.

lmms-eval loads this module after its built-in models (``overwrite=True``). It imports
only lmms-eval's light registry module; model classes are named as import paths and are
imported only when a run asks for them.

    python -m lmms_eval --model coemodel ...                  # chat class
    python -m lmms_eval --model coemodel --force_simple ...   # simple class
"""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

PACKAGE = "benchcoe_plugins.adapters.lmms_eval"

MANIFESTS: list[ModelManifest] = [
    ModelManifest(
        model_id="coemodel",
        simple_class_path=f"{PACKAGE}.coemodel.CoEModelSimple",
        chat_class_path=f"{PACKAGE}.coemodel.CoEModelChat",
    ),
    ModelManifest(
        model_id="coe_replay",
        simple_class_path=f"{PACKAGE}.replay_model.ReplayLMMS",
    ),
]
