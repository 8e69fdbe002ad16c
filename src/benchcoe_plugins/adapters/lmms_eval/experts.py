"""Experts of the lmms-eval ``coemodel``: which interface each one gets, and building it.

An expert is a vision expert (any lmms-eval model, run through its chat or simple class)
or a text expert (``modality: text``: any lm-eval model such as ``hf`` or ``vllm``, which
reads the task's text prompt without images). A vision expert uses the class of the CoE's
own kind when its model has one, else the other; ``model_args.lmms_interface: simple|chat``
picks one explicitly. Everything here is decided from the registries, before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from benchcoe_plugins.adapters.lmms_eval.requests import CHAT, SIMPLE, TEXT
from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.experts.spec import ExpertSpec

INTERFACE_KEY = "lmms_interface"


@dataclass(frozen=True)
class ExpertInterface:
    name: str
    kind: str  # simple | chat | text
    model: str
    model_args: dict[str, Any]

    def answers(self, request_type: str, outer_kind: str) -> tuple[bool, str]:
        """Whether this expert can answer ``request_type`` requests of a CoE of ``outer_kind``; why not."""
        if request_type == "generate_until":
            return True, ""
        if request_type == "loglikelihood":
            if self.kind == CHAT:
                return False, (f"expert {self.name!r} runs lmms-eval's chat class of {self.model!r}, which has no "
                               f"loglikelihood. Give it model_args {INTERFACE_KEY}: simple (if {self.model!r} has a "
                               f"simple class) or route log-likelihood tasks to another expert.")
            return True, ""
        if request_type == "generate_until_multi_round":
            if self.kind != outer_kind:
                return False, (f"expert {self.name!r} is a {self.kind} expert; multi-round requests cannot be "
                               f"converted, so only {outer_kind} experts can answer them. Use an expert with a "
                               f"{outer_kind} class (set {INTERFACE_KEY}: {outer_kind}) or run the CoE "
                               f"{'with' if outer_kind == CHAT else 'without'} --force_simple.")
            return True, ""
        return False, f"the coemodel does not route {request_type!r} requests."


def lmms_model_names() -> list[str]:
    from lmms_eval.models import MODEL_REGISTRY_V2

    return list(MODEL_REGISTRY_V2.list_model_names())


def lm_eval_model_names() -> list[str]:
    import lm_eval.models  # noqa: F401  (fills lm-eval's registry with its stock models)
    from lm_eval.api.registry import model_registry

    return list(model_registry.keys())


def known_model_names() -> list[str]:
    """Names a config may use: lmms-eval models (vision experts) and lm-eval models (text experts)."""
    return sorted(set(lmms_model_names()) | set(lm_eval_model_names()))


def _vision_kind(spec: ExpertSpec, outer_kind: str) -> str:
    from lmms_eval.models import MODEL_REGISTRY_V2

    manifest = MODEL_REGISTRY_V2.get_manifest(spec.model)
    available = [k for k, path in ((SIMPLE, manifest.simple_class_path), (CHAT, manifest.chat_class_path)) if path]
    wanted = spec.model_args.get(INTERFACE_KEY)
    if wanted is not None:
        if wanted not in (SIMPLE, CHAT):
            raise ConfigError(f"experts.{spec.name}.model_args.{INTERFACE_KEY}: {wanted!r} must be 'simple' or 'chat'.")
        if wanted not in available:
            raise ConfigError(f"experts.{spec.name}.model_args.{INTERFACE_KEY}: lmms-eval model {spec.model!r} has no "
                              f"{wanted} class (it has: {available}). Remove the key or choose {available[0]!r}.")
        return wanted
    return outer_kind if outer_kind in available else available[0]


def resolve_interfaces(specs: dict[str, ExpertSpec], outer_kind: str) -> dict[str, ExpertInterface]:
    """Each expert's interface; raises ConfigError naming the expert and the fix."""
    lmms_names, lm_names = set(lmms_model_names()), None
    interfaces = {}
    for name, spec in specs.items():
        args = {k: v for k, v in spec.model_args.items() if k != INTERFACE_KEY}
        if spec.modality == TEXT:
            lm_names = lm_names if lm_names is not None else set(lm_eval_model_names())
            if spec.model not in lm_names:
                raise ConfigError(
                    f"experts.{name}: modality text means an lm-eval model, but {spec.model!r} is not one "
                    f"(lm-eval models: {', '.join(sorted(lm_names))}). Use e.g. model: hf, or set modality: vision "
                    f"for an lmms-eval model."
                )
            if INTERFACE_KEY in spec.model_args:
                raise ConfigError(f"experts.{name}.model_args.{INTERFACE_KEY} applies to vision experts only; remove it.")
            interfaces[name] = ExpertInterface(name, TEXT, spec.model, args)
            continue
        if spec.model not in lmms_names:
            raise ConfigError(
                f"experts.{name}: {spec.model!r} is not an lmms-eval model. Vision experts (the default in "
                f"lmms-eval) must be lmms-eval models (e.g. llava_hf, qwen2_5_vl); for an lm-eval text model "
                f"set modality: text."
            )
        interfaces[name] = ExpertInterface(name, _vision_kind(spec, outer_kind), spec.model, args)
    return interfaces


HF_TEXT_MODELS = ("hf", "hf-auto", "huggingface")  # lm-eval's HFLM names


def build_expert(interface: ExpertInterface, harness_args: dict[str, Any]) -> Any:
    """The expert model. Its own model_args win over the CLI's batch_size / max_batch_size / device."""
    merged = {k: v for k, v in harness_args.items() if v is not None and k not in interface.model_args}
    merged.update(interface.model_args)
    if interface.kind == TEXT:
        from lm_eval.api.registry import get_model

        if interface.model in HF_TEXT_MODELS and "device" not in merged:
            # lmms-eval passes no device; lm-eval's HF model would then take its own default, "cuda"
            import torch

            merged["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        return get_model(interface.model).create_from_arg_string("", merged)
    from lmms_eval.models import MODEL_REGISTRY_V2

    model_class = MODEL_REGISTRY_V2.get_model_class(interface.model, force_simple=interface.kind == SIMPLE)
    return model_class.create_from_arg_string("", merged)


def build_isolated_text_expert(spec: ExpertSpec, harness_args: dict[str, Any]) -> Any:
    """What the worker process of an ``isolated: true`` text expert builds (see experts/isolated.py)."""
    return build_expert(resolve_interfaces({spec.name: spec}, TEXT)[spec.name], harness_args)


def check_interfaces(interfaces: Iterable[ExpertInterface], request_types: Iterable[str], outer_kind: str) -> None:
    for interface in interfaces:
        for request_type in request_types:
            ok, why = interface.answers(request_type, outer_kind)
            if not ok:
                raise ConfigError(why)
