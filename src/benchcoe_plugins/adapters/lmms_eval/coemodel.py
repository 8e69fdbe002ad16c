"""lmms-eval model ``coemodel``: a router and a pool of lmms-eval / lm-eval models behind one ``lmms``.

    python -m lmms_eval --model coemodel --model_args config=coe.yaml --tasks mmmu_val,mmstar
    python -m lmms_eval --model coemodel --force_simple --model_args config=coe.yaml --tasks scienceqa_full

``CoEModelChat`` (the default) and ``CoEModelSimple`` (``--force_simple``) receive the
requests lmms-eval builds for their kind. Each document (task, doc_id) is routed once; its
requests go to that expert, rewritten for the expert's kind where it differs (see
``requests.py``): vision experts of the other kind, and text experts (lm-eval models) that
read the text prompt without images. Image-free documents never reach an expert that needs
an image (``handles_text_only: false``, the default for vision experts).

Every expert shares the CoE's ``task_dict``, ``accelerator``, rank and world size. The routing
log (one row per document) is written beside lmms-eval's results, and the results JSON gets a
``coe`` section (router, experts, documents per expert and task, loads and spend); with
several processes the rows and figures of every rank are gathered first, so it covers all ranks.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from benchcoe_plugins.adapters.bad_input import one_line_errors
from benchcoe_plugins.adapters.caller_context import find_caller_local, record_paths
from benchcoe_plugins.adapters.lmms_eval import requests as shapes
from benchcoe_plugins.adapters.lmms_eval.experts import (ExpertInterface, build_expert, known_model_names,
                                                        resolve_interfaces)
from benchcoe_plugins.core.config import CoEConfig, load_config
from benchcoe_plugins.core.documents import RoutingDocument, question_text
from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.core.provenance import reproducibility_record
from benchcoe_plugins.core.session import AllRanks, CoESession
from benchcoe_plugins.experts.isolated import IsolatedExpert
from benchcoe_plugins.experts.spec import ExpertSpec

logger = logging.getLogger(__name__)

# Fields the router reads per task when the config names none (question_field: {task: fields}).
DEFAULT_QUESTION_FIELDS: dict[str, list[str]] = {
    "mmmu*": ["question"],
    "mmstar*": ["question"],
    "scienceqa*": ["question", "hint"],
}
RESULTS_KEY = "coe"
# Task config sections lmms-eval chooses by the running model's name.
MODEL_SPECIFIC_SETTINGS = ("lmms_eval_specific_kwargs", "model_specific_generation_kwargs",
                           "model_specific_target_kwargs")


class _CoEModel(lmms):
    """Shared body of the chat and simple ``coemodel`` classes."""

    kind: str = shapes.SIMPLE
    request_types: tuple[str, ...] = ("generate_until", "generate_until_multi_round", "loglikelihood")

    @one_line_errors()
    def __init__(self, config: str | dict | None = None, batch_size: Any = None, max_batch_size: Any = None,
                 device: Any = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            raise ConfigError("the coemodel needs a config: --model_args config=/path/to/coe.yaml")
        self.config: CoEConfig = load_config(config, overrides, known_models=known_model_names,
                                             default_modality="vision")
        self.interfaces: dict[str, ExpertInterface] = resolve_interfaces(self.config.experts, self.kind)
        self._vision_experts_in_process()
        self.harness_args = {"batch_size": batch_size, "max_batch_size": max_batch_size, "device": device}
        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))
        from accelerate import Accelerator

        self.accelerator = Accelerator()
        self._device = self.accelerator.device
        self.session = CoESession(self.config, self._build_expert, self._rank, self._world_size,
                                  shapes.plain_answer)
        self._checked: set[tuple[str, str]] = set()
        self._visual_digests: dict[tuple[str, str, str], str] = {}  # per document (doc_id, task, split)
        self._settings_checked: set[tuple[str, str]] = set()
        self._closed = False
        self._key_response_cache()

    def _vision_experts_in_process(self) -> None:
        """Vision experts read the task's documents and images from the shared ``task_dict``, so they run in
        this process; ``isolated: true`` (a worker process) is for text experts only."""
        raw_experts = self.config.raw.get("experts") or {}
        for name, spec in list(self.config.experts.items()):
            if not spec.isolated or self.interfaces[name].kind == shapes.TEXT:
                continue
            if "isolated" in (raw_experts.get(name) or {}):
                raise ConfigError(f"experts.{name}.isolated: an lmms-eval vision expert runs in the harness's process "
                                  f"(it reads the task's documents and images there); remove isolated: true.")
            logger.warning("benchcoe: expert %r (%s) runs in the harness's process: lmms-eval vision experts cannot "
                           "run in a worker process of their own", name, spec.model)
            self.config.experts[name] = replace(spec, isolated=False)

    def _key_response_cache(self) -> None:
        """lmms-eval's --use_cache keys answers by the model name and --model_args only, so a changed config
        file, router or expert at the same path would get another CoE's answers: add the CoE's fingerprint
        (router checksum, experts, routing settings) to the key the evaluator is about to build."""
        if find_caller_local("use_cache", "lmms_eval.evaluator") is None:
            return
        import lmms_eval.evaluator as evaluator

        original, fingerprint = evaluator.ResponseCache, self.session.fingerprint()

        class FingerprintedCache(original):  # type: ignore[misc, valid-type]
            @classmethod
            def create(cls, cache_root: str, *, model: str = "", model_args: Any = "", **kwargs: Any) -> Any:
                evaluator.ResponseCache = original
                keyed = ({**model_args, "coe_fingerprint": fingerprint} if isinstance(model_args, dict)
                         else f"{model_args},coe_fingerprint={fingerprint}".lstrip(","))
                return original.create(cache_root, model=model, model_args=keyed, **kwargs)

        evaluator.ResponseCache = FingerprintedCache

    @property
    def device(self) -> Any:
        return self._device

    # -- experts -----------------------------------------------------------------------------
    def _build_expert(self, spec: ExpertSpec) -> Any:
        if spec.isolated:  # a text expert (vision experts run here, see _vision_experts_in_process)
            return IsolatedExpert("benchcoe_plugins.adapters.lmms_eval.experts:build_isolated_text_expert", spec,
                                  self.harness_args)
        model = build_expert(self.interfaces[spec.name], self.harness_args)
        if self.interfaces[spec.name].kind != shapes.TEXT:
            model.task_dict = self.task_dict
            model.accelerator = self.accelerator
            model._rank, model._world_size = self.rank, self.world_size
        return model

    def _doc(self, request_view: shapes.RequestView) -> Mapping[str, Any]:
        return self.task_dict[request_view.task][request_view.split][request_view.doc_id]

    def _prepare(self, expert: str, request_type: str, request: Instance) -> Any:
        """``request`` rewritten for ``expert``'s kind (unchanged when the kinds agree)."""
        interface = self.interfaces[expert]
        if interface.kind == self.kind:
            return request
        request_view = shapes.view(request, self.kind)
        if interface.kind == shapes.TEXT:
            from lm_eval.api.instance import Instance as TextInstance

            doc = self._doc(request_view)
            prompt = shapes.text_prompt(request_view, doc)
            if request_type == "loglikelihood":
                arguments = (prompt, shapes.target_text(request_view, doc))
            else:
                arguments = (prompt, shapes.text_gen_kwargs(request_view.gen_kwargs))
            return TextInstance(request_type, dict(doc), arguments, request.idx,
                                (request_view.task, request_view.doc_id, 1))
        arguments = shapes.to_chat_args(request_view) if interface.kind == shapes.CHAT else shapes.to_simple_args(request_view)
        return Instance(request_type=request_type, arguments=arguments, idx=request.idx,
                        metadata=dict(request.metadata), task_name=request.task_name, doc_id=request.doc_id)

    @staticmethod
    def _call_expert(model: Any, request_type: str, requests: list[Any]) -> list[Any]:
        return getattr(model, request_type)(requests)

    # -- routing -----------------------------------------------------------------------------
    def _question_fields(self, task: str) -> tuple[list[str], bool]:
        """(fields, explicit): the config's fields for ``task``, else this adapter's defaults."""
        configured = self.config.configured_question_fields(task)
        if configured:
            return configured, True
        for pattern, fields in DEFAULT_QUESTION_FIELDS.items():
            if fnmatch.fnmatchcase(task, pattern):
                return fields, False
        return self.config.question_fields_for(task), False

    def _request_key(self, request_type: str, request: Any) -> str:
        """The result-store key of an lmms-eval request, its document's visuals included (a request
        rewritten for a text-only expert carries none: its answer never saw them)."""
        args = tuple(getattr(request, "args", ()))
        if not any(callable(a) for a in args):
            return shapes.request_key(request_type, request)
        document = shapes.document_of_args(args)
        if document not in self._visual_digests:
            request_view = shapes.view(request, shapes.kind_of_args(args))
            self._visual_digests[document] = shapes.visuals_digest(shapes.visuals_of(request_view,
                                                                                     self._doc(request_view)))
        return shapes.request_key(request_type, request, self._visual_digests[document])

    def _document(self, request: Instance) -> RoutingDocument:
        request_view = shapes.view(request, self.kind)
        doc = self._doc(request_view)
        fields, explicit = self._question_fields(request_view.task)
        has_image = bool(shapes.visuals_of(request_view, doc))
        if has_image and not any(isinstance(doc, Mapping) and doc.get(f) not in (None, "") for f in fields):
            text = ""  # an image-only question (e.g. MMMU-Pro vision): nothing to read, so the fallback answers it
        else:
            fallback = request_view.context if isinstance(request_view.context, str) and not explicit else None
            text = question_text(doc, fields, fallback, request_view.task, request_view.doc_id)
        return RoutingDocument(request_view.task, request_view.doc_id, text, doc, has_image)

    def _check_conversions(self, work: Mapping[str, list[Instance]]) -> None:
        """Before any expert loads: every routed (request type, expert) pair must be answerable."""
        for request_type, requests in work.items():
            if not requests:
                continue
            documents = [self._document(r) for r in requests]
            experts = self.session.route(documents)
            if self.session.router.kind == "cascade":  # its second expert may answer any document the first did
                second = self.config.played_by(self.session.router.second)
                text_only = self.config.experts[second].handles_text_only  # else image-free documents stay put
                escalable = [d for d, e in zip(documents, experts) if e != second and (text_only or d.has_image is not False)]
                documents, experts = documents + escalable, experts + [second] * len(escalable)
            self._warn_model_specific_settings({(d.task, e) for d, e in zip(documents, experts)})
            for expert in dict.fromkeys(experts):
                if (request_type, expert) in self._checked:
                    continue
                ok, why = self.interfaces[expert].answers(request_type, self.kind)
                if not ok:
                    raise ConfigError(f"cannot send {request_type} requests to the router's choice: {why}")
                self._checked.add((request_type, expert))

    def _warn_model_specific_settings(self, pairs: set[tuple[str, str]]) -> None:
        """lmms-eval picks a task's model-specific prompt, generation and target settings by the name of the
        model it runs, here ``coemodel`` (so: the default ones). An expert whose model has its own section
        answers the default prompt inside the CoE, not the one it gets when run alone: say so once."""
        tasks = {getattr(t, "task_name", None): getattr(t, "task", None)
                 for t in find_caller_local("eval_tasks", "lmms_eval.evaluator", lambda v: isinstance(v, list)) or []}
        for task, expert in sorted(pairs - self._settings_checked):
            self._settings_checked.add((task, expert))
            model = self.config.experts[expert].model
            config = getattr(tasks.get(task), "config", None)
            sections = [name for name in MODEL_SPECIFIC_SETTINGS if model in (getattr(config, name, None) or {})]
            if sections:
                logger.warning("benchcoe: task %s has %s for %r models, which lmms-eval applies only to the model it "
                               "runs (coemodel): expert %r answers with the task's default ones here, not those it "
                               "gets when run alone", task, " and ".join(sections), model, expert)

    @one_line_errors()
    def _answer(self, request_type: str, requests: list[Instance]) -> list[Any]:
        pending = self._pending_requests()
        expanded = None
        if pending:
            expanded = {kind: [r for r in reqs for _ in range(r.repeats or 1)] for kind, reqs in pending.items()}
        self._check_conversions({request_type: requests, **(expanded or {})})
        return self.session.answer(request_type, requests, expanded, self._document, self._prepare,
                                   self._request_key, self._call_expert)

    def _pending_requests(self) -> dict[str, list[Instance]]:
        """The evaluator's requests of the types this model answers (agentic tasks add request types the
        evaluator serves through ``generate_until`` round by round)."""
        pending = find_caller_local("requests", "lmms_eval.evaluator", lambda v: isinstance(v, dict)) or {}
        return {kind: reqs for kind, reqs in pending.items() if kind in self.request_types}

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        return self._answer("generate_until", requests)

    def generate_until_multi_round(self, requests: list[Instance]) -> list[Any]:
        return self._answer("generate_until_multi_round", requests)

    # -- record ------------------------------------------------------------------------------
    def _gather(self, value: Any) -> list[Any]:
        """``value`` of every rank (rank order); just ``[value]`` in one process."""
        if self.world_size <= 1:
            return [value]
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            logger.warning("benchcoe: %d ranks but no process group; the routing record covers rank %d only",
                           self.world_size, self.rank)
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def routing_summary(self, ranks: AllRanks | None = None) -> dict[str, Any]:
        summary = self.session.summary(ranks)
        summary["kind"] = self.kind
        summary["expert_interfaces"] = {name: i.kind for name, i in self.interfaces.items()}
        return summary

    def clean(self) -> None:
        """Called by lmms-eval on every rank once all requests are answered: record, then free."""
        if not self._closed:
            self._closed = True
            self.session.pool.close()
            # documents answered from --use_cache never reached the session: route them for the log
            for requests in self._pending_requests().values():
                self.session.route([self._document(r) for r in requests])
            ranks = self.session.gather_ranks(self._gather)
            if self.rank == 0:
                self._record(ranks)
        super().clean()

    def _record(self, ranks: AllRanks) -> None:
        tracker = find_caller_local("evaluation_tracker", "lmms_eval",
                                    lambda v: hasattr(v, "general_config_tracker"))
        summary = self.routing_summary(ranks)
        path, outputs = record_paths(tracker, "lmms_eval", self.config.output_name(), self.config.routing_log)
        if path is not None:
            self.session.write_routing_log(path, ranks.rows)
            logger.info("benchcoe: routing log written to %s", path)
        summary["routing_log"] = str(path) if path else None
        summary["reproducibility"] = reproducibility_record(self.config, self.session.router_checksum, "lmms_eval",
                                                            outputs)
        self.last_summary = summary
        if tracker is not None:
            add_to_results(tracker, summary)


def add_to_results(tracker: Any, summary: dict[str, Any]) -> None:
    """lmms-eval writes no model info into the results JSON; add ``coe`` when the tracker saves it."""
    save = tracker.save_results_aggregated

    def save_with_coe(results: dict, *args: Any, **kwargs: Any) -> Any:
        results[RESULTS_KEY] = summary
        return save(results, *args, **kwargs)

    tracker.save_results_aggregated = save_with_coe


class CoEModelSimple(_CoEModel):
    """``coemodel`` under ``--force_simple``: also answers ``loglikelihood``."""

    is_simple = True
    kind = shapes.SIMPLE

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        return self._answer("loglikelihood", requests)


class CoEModelChat(_CoEModel):
    """``coemodel`` (default): chat requests; lmms-eval's chat kind has no loglikelihood."""

    is_simple = False
    kind = shapes.CHAT

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError("the chat coemodel has no loglikelihood (lmms-eval's chat models have none); "
                                  "run log-likelihood tasks with --force_simple.")
