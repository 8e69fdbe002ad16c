"""lm-eval model ``coe``: a router and a pool of lm-eval models behind one ``LM``.

    lm_eval --model coe --model_args config=coe.yaml --tasks mmlu_pro

Each document (task, doc_id) is routed once; its requests go to that expert through the
expert's own ``generate_until`` / ``loglikelihood`` / ``loglikelihood_rolling``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import get_model, model_registry

from benchcoe_plugins.adapters.bad_input import one_line_errors
from benchcoe_plugins.adapters.caller_context import find_caller_local, record_paths
from benchcoe_plugins.adapters.lm_eval.distributed import DataParallelMixin
from benchcoe_plugins.core.config import CoEConfig, load_config
from benchcoe_plugins.core.documents import RoutingDocument, question_text
from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.core.provenance import reproducibility_record
from benchcoe_plugins.core.session import AllRanks, CoESession
from benchcoe_plugins.experts.chat_templates import experts_without_chat_template
from benchcoe_plugins.experts.isolated import IsolatedExpert
from benchcoe_plugins.experts.sampling import seed_if_sampling
from benchcoe_plugins.experts.spec import ExpertSpec

logger = logging.getLogger(__name__)

CHAT_MARKER = "<|benchcoe-chat|>"
CACHE_FINGERPRINT_KEY = "__benchcoe_fingerprint__"


def known_lm_eval_models() -> list[str]:
    import lm_eval.models  # noqa: F401  (fills the registry with the stock models)

    return list(model_registry.keys())


def encode_chat(chat_history: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    return CHAT_MARKER + json.dumps({"messages": chat_history, "add_generation_prompt": add_generation_prompt})


def render_chat(model: Any, context: str) -> str:
    """A context the CoE rendered as a chat marker, rendered by ``model``'s own template."""
    if not context.startswith(CHAT_MARKER):
        return context
    chat = json.loads(context[len(CHAT_MARKER):])
    return model.apply_chat_template(chat["messages"], chat["add_generation_prompt"])


def request_key(request_type: str, request: Instance) -> str:
    """Identity of a request inside one expert's result store; the document is part of it because an
    expert may answer by document (replay experts) and two tasks may share a prompt."""
    payload = [request_type, request.task_name, str(request.doc_id), request.idx, list(request.args),
               seed_if_sampling(request.args)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def build_expert(spec: ExpertSpec, harness_args: dict[str, Any]) -> LM:
    """The expert's own model_args win over the CLI's batch_size/max_batch_size/device."""
    merged = {k: v for k, v in harness_args.items() if v is not None and k not in spec.model_args}
    merged.update(spec.model_args)
    return get_model(spec.model).create_from_arg_string("", merged)


class WriteOnlyStore:
    """A cache store that keeps every write and reports every key as absent."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __contains__(self, key: object) -> bool:
        return False

    def __setitem__(self, key: Any, value: Any) -> None:
        self.store[key] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class CoELM(DataParallelMixin, LM):
    @one_line_errors()
    def __init__(self, config: str | dict | None = None, batch_size: Any = None, max_batch_size: Any = None,
                 device: Any = None, **overrides: Any) -> None:
        super().__init__()
        self._setup_data_parallel()
        if config is None:
            raise ConfigError("the coe model needs a config: --model_args config=/path/to/coe.yaml")
        self.config: CoEConfig = load_config(config, overrides, known_models=known_lm_eval_models)
        self.harness_args = {"batch_size": batch_size, "max_batch_size": max_batch_size, "device": device}
        self.session = CoESession(self.config, self._build_expert, self.rank, self.world_size)
        self._all_ranks: AllRanks | None = None
        self._chat_checked = False

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "CoELM":
        from benchcoe_plugins.core.model_args import parse_model_args

        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**parse_model_args(arg_string), **extra)

    # -- experts -----------------------------------------------------------------------------
    def _build_expert(self, spec: ExpertSpec) -> Any:
        if spec.isolated:
            return IsolatedExpert(f"{__name__}:build_expert", spec, self.harness_args)
        model = build_expert(spec, self.harness_args)
        if self.world_size > 1 and self.config.rank_loading == "needed" and hasattr(model, "_world_size"):
            # each rank runs only its share on the experts it needs, so an expert must not
            # wait in a collective for ranks that never loaded it
            model._rank, model._world_size = 0, 1
        return model

    @staticmethod
    def _call_expert(model: LM, request_type: str, requests: list[Instance]) -> list[Any]:
        rendered = [replace(r, arguments=(render_chat(model, r.args[0]), *r.args[1:]))
                    if r.args[0].startswith(CHAT_MARKER) else r for r in requests]
        return getattr(model, request_type)(rendered)

    # -- routing -----------------------------------------------------------------------------
    def _document(self, request: Instance) -> RoutingDocument:
        task = request.task_name or ""
        explicit = self.config.configured_question_fields(task) is not None
        context = request.args[0] if request.args else ""
        if context.startswith(CHAT_MARKER):
            messages = json.loads(context[len(CHAT_MARKER):])["messages"]
            context = messages[-1]["content"] if messages else ""
        text = question_text(request.doc or {}, self.config.question_fields_for(task),
                             None if explicit else context, task, request.doc_id)
        return RoutingDocument(task, request.doc_id, text, request.doc or {})

    @one_line_errors()
    def _answer(self, request_type: str, requests: list[Instance]) -> list[Any]:
        pending = find_caller_local("requests", "lm_eval.evaluator", lambda v: isinstance(v, dict))
        expanded = None
        if pending:
            expanded = {kind: [r for r in reqs for _ in range(r.repeats)] for kind, reqs in pending.items()}
        answers = self.session.answer(request_type, requests, expanded, self._document, lambda e, k, r: r,
                                      request_key, self._call_expert)
        if self.world_size > 1:  # every rank calls each request type, so all of them gather here
            self._all_ranks = self.session.gather_ranks(self.all_gather_object)
        return answers

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        return self._answer("generate_until", requests)

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self._answer("loglikelihood", requests)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        return self._answer("loglikelihood_rolling", requests)

    # -- chat templates: each expert renders the conversation with its own -------------------
    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self._check_chat_templates()
        return encode_chat(chat_history, add_generation_prompt)

    @one_line_errors()
    def _check_chat_templates(self) -> None:
        """Once, before any expert runs: every expert must have a chat template to render with."""
        if self._chat_checked:
            return
        missing = experts_without_chat_template(self.config.experts)
        if missing:
            raise ConfigError(f"--apply_chat_template: expert(s) {missing} have no chat template in their tokenizer "
                              f"files. Run without --apply_chat_template, or give them weights with a chat template.")
        self._chat_checked = True

    @property
    def tokenizer_name(self) -> str:
        return "benchcoe-" + self.session.fingerprint()[:16]

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if chat_template:
            self._check_chat_templates()
        return "per-expert (each expert applies its own chat template)" if chat_template else None

    # -- --use_cache guard -------------------------------------------------------------------
    @one_line_errors()
    def set_cache_hook(self, cache_hook: Any) -> None:
        super().set_cache_hook(cache_hook)
        store = getattr(cache_hook, "dbdict", None)
        if store is None:
            return
        caching = find_caller_local("self", "lm_eval.api.model", lambda v: getattr(v, "dbdict", None) is store)
        if caching is not None:
            # lm-eval keys --use_cache answers by the prompt alone, but a CoE's answer depends on the
            # document (its expert): answers are still written, never read back, so every request reaches
            # the coe, whose result_cache (keyed by expert, task and document) serves reruns.
            caching.dbdict = WriteOnlyStore(store)
            logger.warning("benchcoe: --use_cache answers are not read back for the coe (lm-eval keys them by the "
                           "prompt alone, not the document's expert); its result_cache serves reruns")
        fingerprint = self.session.fingerprint()
        stored = store.get(CACHE_FINGERPRINT_KEY)
        if stored != fingerprint and len(store) > (1 if stored else 0):
            raise ConfigError(
                f"--use_cache file {getattr(store, 'filename', '')!r} holds answers of another model, router or "
                f"expert set (lm-eval's cache key ignores the model). Use another --use_cache path for this CoE "
                f"or delete that file."
            )
        store[CACHE_FINGERPRINT_KEY] = fingerprint
        store.commit()

    # -- record ------------------------------------------------------------------------------
    def get_model_info(self) -> dict[str, Any]:
        """Called by lm-eval on rank 0 after evaluation: the CoE record for the results JSON."""
        rows = self._all_ranks.rows if self._all_ranks is not None else None
        summary = self.session.summary(self._all_ranks)
        tracker = find_caller_local("evaluation_tracker", "lm_eval", lambda v: hasattr(v, "general_config_tracker"))
        path, outputs = record_paths(tracker, "lm_eval", self.config.output_name(), self.config.routing_log)
        if path is not None:
            self.session.write_routing_log(path, rows)
            logger.info("benchcoe: routing log written to %s", path)
        summary["routing_log"] = str(path) if path else None
        summary["reproducibility"] = reproducibility_record(self.config, self.session.router_checksum, "lm_eval",
                                                            outputs)
        return {"coe": summary}
