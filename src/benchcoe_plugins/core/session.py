"""Harness-agnostic CoE run: route each document once, run experts, keep the record.

An adapter turns harness requests into ``RoutingDocument``s and expert requests; the
session decides the expert of each document (memoized per (task, doc_id), so every request
of a document goes to the same expert), runs the pool, and keeps the routing record that
ends up in the routing log and the results JSON.

Look-ahead: the harnesses call the model once per request type. When the adapter can
see the request types still to come (``pending``), the session answers them in the same
pass, so each expert is loaded once per run, and hands the stored answers back when the
harness asks for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from benchcoe_plugins.core.config import CoEConfig
from benchcoe_plugins.core.documents import RoutingDocument, subject_of
from benchcoe_plugins.core.errors import RoutingError
from benchcoe_plugins.experts.pool import ExpertPool, Job
from benchcoe_plugins.experts.spec import ExpertSpec
from benchcoe_plugins.routers.base import RouteDecision, folder_checksum
from benchcoe_plugins.routers.registry import load_router, read_manifest

logger = logging.getLogger(__name__)


def _log_order(row: dict[str, Any]) -> tuple[str, str]:
    return (row["task"], str(row["doc_id"]).zfill(12))


def merge_rank_rows(parts: Iterable[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The routing-log rows of every rank: one per document, in log order."""
    return sorted({(r["task"], str(r["doc_id"])): r for part in parts for r in part}.values(), key=_log_order)


def _summed(parts: Iterable[dict[str, float]]) -> dict[str, float]:
    """Per-name sums that keep zero entries (``Counter`` addition drops them)."""
    total: dict[str, float] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
    return total


def _distinct(values: Iterable[str | None]) -> str | None:
    """The distinct set values in first-seen order, comma-joined (one value stays as it is)."""
    seen = list(dict.fromkeys(v for v in values if v is not None))
    return ", ".join(seen) if seen else None


def merge_rank_figures(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of every rank (each ``CoESession.rank_figures``, rank order) as one: loads, answers from
    the result cache, router seconds and each expert's requests, tokens and seconds summed (seconds of work
    over all ranks, not wall time); the spend's ``process`` and ``tokens_counted_as`` name every distinct
    value; the memory snapshots of every rank, each tagged with its rank."""
    if len(parts) == 1:
        return parts[0]
    spend: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(name for part in parts for name in part["spend"]):
        rows = [part["spend"][name] for part in parts if name in part["spend"]]
        spend[name] = {"requests": sum(r["requests"] for r in rows),
                       "generated_tokens": sum(r["generated_tokens"] for r in rows),
                       "wall_seconds": round(sum(r["wall_seconds"] for r in rows), 3),
                       "tokens_counted_as": _distinct(r["tokens_counted_as"] for r in rows),
                       "process": _distinct(r["process"] for r in rows)}
    recorded = [part["memory"] for part in parts]
    memory = None if all(m is None for m in recorded) else [
        {"rank": rank, **snapshot} for rank, snapshots in enumerate(recorded) for snapshot in snapshots or []]
    return {"expert_loads": _summed(part["expert_loads"] for part in parts),
            "answers_from_result_cache": _summed(part["answers_from_result_cache"] for part in parts),
            "router_seconds": sum(part["router_seconds"] for part in parts),
            "spend": spend,
            "memory": memory}


@dataclass(frozen=True)
class AllRanks:
    """What every rank recorded, gathered to write one record: the routing-log rows (one per document)
    and each rank's own figures, in rank order."""

    rows: list[dict[str, Any]]
    figures: list[dict[str, Any]]


@dataclass(frozen=True)
class RoutedDocument:
    document: RoutingDocument
    expert: str
    decision: RouteDecision
    reason: str
    first_expert: str | None = None  # a cascade's first expert, which answered before this decision


class CoESession:
    def __init__(self, config: CoEConfig, build_expert: Callable[[ExpertSpec], Any], rank: int = 0,
                 world_size: int = 1, plain_answer: Callable[[Any], Any] | None = None) -> None:
        self.config = config
        self.router = load_router(config.router)
        self.gain_threshold = 0.0  # a cascade escalates where the expected gain exceeds it
        if self.router.kind == "cascade":
            from benchcoe_plugins.routers.cost import cascade_gain_threshold

            self.gain_threshold = cascade_gain_threshold(self.router, config)
        elif config.cost_weight is not None or config.budget is not None:
            from benchcoe_plugins.routers.cost import CostAwareRouter

            budget = config.budget
            costs = config.router_costs(self.router.experts_)
            if budget is not None and budget.share is not None and budget.expert is None and config.router_expert:
                # "the most expensive expert" is a configured one, with every router expert it plays
                priciest = max(costs, key=costs.__getitem__)
                budget = replace(budget, expert=config.played_by(priciest))
            if budget is not None and budget.expert in config.router_expert.values():
                played = tuple(theirs for theirs, mine in config.router_expert.items() if mine == budget.expert)
                budget = replace(budget, expert=played[0] if len(played) == 1 else played)
            self.router = CostAwareRouter(self.router, costs, config.cost_weight, budget)
        self.router_checksum = folder_checksum(config.router)
        self.rank = rank
        self.world_size = world_size
        self.pool = ExpertPool(config.experts, build_expert, config.result_cache, rank, config.checkpoint_every,
                               plain_answer)
        self.routes: dict[tuple[str, str], RoutedDocument] = {}
        self._warned_subjects: set[str] = set()
        data = read_manifest(config.router).get("data")
        tasks = data.get("tasks") if isinstance(data, dict) else None
        self.trained_tasks: set[str] = {t for t in tasks if isinstance(t, str)} if isinstance(tasks, list) else set()
        self._noted_tasks: set[str] = set()
        self._stash: dict[tuple[str, str], list] = defaultdict(list)
        self._answered_types: set[str] = set()
        self.router_seconds = 0.0  # time inside router.decide, for the results JSON

    # -- routing ---------------------------------------------------------------------------
    def _text_capable(self, preferred: str) -> str | None:
        specs = self.config.experts
        if specs[preferred].handles_text_only:
            return preferred
        if specs[self.config.fallback].handles_text_only:
            return self.config.fallback
        return next((n for n, s in specs.items() if s.handles_text_only), None)

    def route(self, documents: Sequence[RoutingDocument]) -> list[str]:
        """Expert name per document; each (task, doc_id) is decided once per run."""
        new: dict[tuple[str, str], RoutingDocument] = {}
        for document in documents:
            if document.key not in self.routes:
                new.setdefault(document.key, document)
        if new:
            fresh = list(new.values())
            self._note_unseen_tasks(fresh)
            start = time.perf_counter()
            decisions = self._decide(fresh)
            self.router_seconds += time.perf_counter() - start
            for document, decision in zip(fresh, decisions):
                self.routes[document.key] = self._finalize(document, decision)
        return [self.routes[d.key].expert for d in documents]

    def _note_unseen_tasks(self, documents: Sequence[RoutingDocument]) -> None:
        """One warning per task the router was not trained on (transfer is allowed: a text router places
        any document by its text; but a router meant for other tasks should not route silently)."""
        unseen = sorted({d.task for d in documents} - self.trained_tasks - self._noted_tasks) if self.trained_tasks else []
        for task in unseen:
            self._noted_tasks.add(task)
            trained = sorted(self.trained_tasks)
            logger.warning("benchcoe: the router was trained on tasks %s; task %s is not among them, so its documents "
                           "are routed by what the router learnt there (their text and subject)",
                           ", ".join(trained[:4]) + (f", ... ({len(trained)})" if len(trained) > 4 else ""), task)

    def _decide(self, documents: list[RoutingDocument]) -> list[RouteDecision]:
        """The router's decisions; a subject router routes the tasks whose ``subject_source`` is
        'field' by the document's own subject instead of the predicted one."""
        if self.router.kind != "subject" or not self.config.subject_source:
            return self.router.decide(documents)
        given = [subject_of(d.task, d.doc) if self.config.subject_source_for(d.task) == "field" else None
                 for d in documents]
        return self.router.decide(documents, subjects=given)

    def _finalize(self, document: RoutingDocument, decision: RouteDecision) -> RoutedDocument:
        expert, reason = decision.expert, decision.reason or "router"
        expert = self.config.router_expert.get(expert, expert) if expert is not None else None
        if expert is None or expert not in self.config.experts:
            subject = decision.subject or "(none)"
            # the router's own reason where it names no subject (e.g. no question text), else an unknown subject
            own_reason = decision.expert is None and decision.subject is None and decision.reason not in ("", "unknown subject")
            cause = decision.reason if own_reason else f"unknown subject {subject}"
            if cause not in self._warned_subjects:
                self._warned_subjects.add(cause)
                logger.warning("benchcoe: the router %s (task %s); such documents go to the fallback expert %r",
                               f"cannot place a document: {cause}" if own_reason else f"has no expert for subject {subject!r}",
                               document.task, self.config.fallback)
            expert, reason = self.config.fallback, f"fallback: {cause}"
        if document.has_image is False and not self.config.experts[expert].handles_text_only:
            text_expert = self._text_capable(expert)
            if text_expert is None:
                raise RoutingError(
                    f"document {document.doc_id} of {document.task} has no image, and no expert can answer "
                    f"image-free documents. Add a text expert (modality: text) or set handles_text_only: true "
                    f"on an expert that can."
                )
            expert, reason = text_expert, f"image-free document; {expert} needs an image"
        return RoutedDocument(document, expert, decision, reason)

    # -- answering ---------------------------------------------------------------------------
    def answer(
        self,
        request_type: str,
        requests: Sequence[Any],
        pending: dict[str, Sequence[Any]] | None,
        document_of: Callable[[Any], RoutingDocument],
        prepare: Callable[[str, str, Any], Any],
        request_key: Callable[[str, Any], str],
        call: Callable[[Any, str, list[Any]], list[Any]],
    ) -> list[Any]:
        """Answers of ``requests`` in order; also answers ``pending`` types ahead (see module doc)."""
        answered_ahead = request_type in self._answered_types
        work: dict[str, Sequence[Any]] = {request_type: requests}
        for other_type, other_requests in (pending or {}).items():
            if other_type != request_type and other_type not in self._answered_types:
                work[other_type] = other_requests
        self._answered_types.update(work)

        # Answers are stashed by request content, not object: lmms-eval's rank padding makes new
        # request objects equal to earlier ones. A request whose content already has an answer is
        # not run again; extra copies (lm-eval pads a rank with its last request) reuse the last
        # answer, so every rank runs the same pool passes.
        if self.router.kind == "cascade":
            refused = sorted(kind for kind, reqs in work.items() if kind != "generate_until" and reqs)
            if refused:
                raise RoutingError(f"a cascade router reads the first expert's generated answer, so it serves "
                                   f"generate_until tasks only, and {refused} requests came (a task scored by "
                                   f"log-likelihood?). Run a generative task, or use a query or subject router.")
        needed: list[tuple[str, Any, str]] = []
        current_keys: list[str] = []
        filling: set[tuple[str, str]] = set()  # keys first answered in this call (repeats run each)
        for kind, reqs in work.items():
            for request in reqs:
                key = request_key(kind, request)
                if kind == request_type:
                    current_keys.append(key)
                if not self._stash[(kind, key)] or (kind, key) in filling:
                    filling.add((kind, key))
                    needed.append((kind, request, key))
        documents = [document_of(r) for _, r, _ in needed]
        experts = self.route(documents) if needed else []

        def jobs_of(items: Sequence[tuple[str, Any, str]], chosen: Sequence[str]) -> list[Job]:
            jobs = []
            occurrence: Counter = Counter()
            for (kind, request, key), expert in zip(items, chosen):
                expert_request = prepare(expert, kind, request)
                store_key = key if expert_request is request else request_key(kind, expert_request)
                # the n-th copy of one request content (repeats) gets its own result-store entry
                n = occurrence[(expert, kind, store_key)]
                occurrence[(expert, kind, store_key)] += 1
                jobs.append(Job(expert, kind, expert_request, store_key if n == 0 else f"{store_key}#{n}"))
            return jobs

        def run(jobs: list[Job], walk: Sequence[str] | None = None) -> list[Any]:
            return self.pool.run(jobs, call, load_all=self.config.rank_loading == "all" and self.world_size > 1,
                                 keep_last=not pending, walk=walk)

        jobs = jobs_of(needed, experts)
        if self.router.kind == "cascade" and needed:
            answers = self._run_cascade(needed, documents, experts, jobs, jobs_of, run)
        else:
            # a type answered ahead needs no pool pass (the same on every rank, so 'all' stays in step)
            answers = [] if answered_ahead and not jobs else run(jobs)
        for (kind, _, key), answer in zip(needed, answers):
            self._stash[(kind, key)].append(answer)
        served: Counter = Counter()
        results = []
        for key in current_keys:
            stashed = self._stash[(request_type, key)]
            results.append(stashed[min(served[key], len(stashed) - 1)])
            served[key] += 1
        return results

    def _run_cascade(self, needed: list[tuple[str, Any, str]], documents: list[RoutingDocument], experts: list[str],
                     jobs: list[Job], jobs_of: Callable, run: Callable) -> list[Any]:
        """Two pool passes: every expert but the second on its documents (the first on all it was routed),
        then the second on the documents routed to it and on those the first one's answers escalate. Each
        pass walks its own experts, so with ``rank_loading: all`` every expert still loads once."""
        second = self.config.played_by(self.router.second)
        answers: list[Any] = [None] * len(jobs)
        first_pass = [i for i, job in enumerate(jobs) if job.expert != second]
        for i, answer in zip(first_pass, run([jobs[i] for i in first_pass], [n for n in self.config.experts if n != second])):
            answers[i] = answer
        escalated = self._escalate(documents, experts, answers, [key for _, _, key in needed])
        second_pass = [i for i, job in enumerate(jobs) if job.expert == second] + escalated
        second_jobs = [jobs[i] for i, job in enumerate(jobs) if job.expert == second]
        second_jobs += jobs_of([needed[i] for i in escalated], [second] * len(escalated))
        for i, answer in zip(second_pass, run(second_jobs, [second])):
            answers[i] = answer
        return answers

    def _escalate(self, documents: Sequence[RoutingDocument], experts: Sequence[str], answers: Sequence[Any],
                  keys: Sequence[str]) -> list[int]:
        """A cascade's second decision, once per document its first expert answered: reads those answers
        (each distinct request of the document once, joined: copies from rank padding or repeats do not
        change what it reads) and returns the positions whose requests the second expert answers."""
        if getattr(self.router, "mode_", "cascade") == "best":  # the guard kept every document on one expert
            return []
        first = self.config.played_by(self.router.first)
        second = self.config.played_by(self.router.second)
        answered: dict[tuple[str, str], list[str]] = defaultdict(list)
        read: set[tuple[tuple[str, str], str]] = set()
        for document, expert, answer, key in zip(documents, experts, answers, keys):
            routed = self.routes[document.key]
            if (expert == first and routed.first_expert is None and routed.decision.expert == self.router.first
                    and (document.key, key) not in read):
                read.add((document.key, key))
                text = self.pool.plain_answer(answer)  # a chat expert's GenerationResult reads as its text
                answered[document.key].append(text if isinstance(text, str) else "")
        if answered:
            undecided = [self.routes[key].document for key in answered]
            start = time.perf_counter()
            escalate, gain = self.router.escalate(undecided, ["\n".join(answered[d.key]) for d in undecided],
                                                  self.gain_threshold)
            self.router_seconds += time.perf_counter() - start
            needs_image = not self.config.experts[second].handles_text_only
            for document, up, value in zip(undecided, escalate.tolist(), gain.tolist()):
                reason = (f"cascade: escalated (expected gain {value:.4f} > {self.gain_threshold:.4g})" if up else
                          f"cascade: first expert's answer kept (expected gain {value:.4f} <= {self.gain_threshold:.4g})")
                if up and document.has_image is False and needs_image:
                    up, reason = False, f"cascade: first expert's answer kept (image-free document; {second} needs an image)"
                chosen = self.router.second if up else self.router.first
                self.routes[document.key] = RoutedDocument(document, second if up else first,
                                                           RouteDecision(chosen, float(value), None, reason), reason,
                                                           first_expert=first)
        return [i for i, (document, expert) in enumerate(zip(documents, experts))
                if expert == first and self.routes[document.key].expert == second != first]

    # -- record ----------------------------------------------------------------------------
    def log_rows(self) -> list[dict[str, Any]]:
        rows = []
        for routed in self.routes.values():
            rows.append({
                "task": routed.document.task,
                "doc_id": routed.document.doc_id,
                "expert": routed.expert,
                "router_expert": routed.decision.expert,
                "score": routed.decision.score,
                "subject": routed.decision.subject,
                "reason": routed.reason,
                **({"first_expert": routed.first_expert} if routed.first_expert is not None else {}),
            })
        rows.sort(key=_log_order)
        return rows

    def rank_figures(self) -> dict[str, Any]:
        """This process's own figures for the record; ``merge_rank_figures`` joins those of several ranks."""
        return {"expert_loads": dict(self.pool.loads), "answers_from_result_cache": dict(self.pool.from_store),
                "router_seconds": self.router_seconds, "spend": self.pool.spend.record(), "memory": self.pool.memory}

    def gather_ranks(self, all_gather_object: Callable[[Any], list[Any]]) -> AllRanks:
        """Rows and figures of every rank through one collective call, which every rank must make."""
        parts = all_gather_object({"rows": self.log_rows(), "figures": self.rank_figures()})
        return AllRanks(merge_rank_rows(part["rows"] for part in parts), [part["figures"] for part in parts])

    def summary(self, ranks: AllRanks | None = None) -> dict[str, Any]:
        """The ``coe`` record of the results JSON: over all ranks when ``ranks`` (gathered) is given,
        else over this process."""
        rows = self.log_rows() if ranks is None else ranks.rows
        figures = self.rank_figures() if ranks is None else merge_rank_figures(ranks.figures)
        counts: dict[str, Counter] = defaultdict(Counter)
        called: Counter = Counter()  # documents each expert answered, a cascade's first expert included
        for row in rows:
            counts[row["task"]][row["expert"]] += 1
            called[row["expert"]] += 1
            if row.get("first_expert") not in (None, row["expert"]):
                called[row["first_expert"]] += 1
        manifest_path = self.config.router / "router.json"
        manifest = json.loads(manifest_path.read_text())
        return {
            "name": self.config.name,
            "config_file": str(self.config.source.resolve()) if self.config.source else None,
            "config": self.config.raw,
            "router": {
                "name": manifest.get("name", self.config.router.name),
                "kind": manifest.get("kind"),
                "path": str(self.config.router),
                "sha256": self.router_checksum,
            },
            "fallback": self.config.fallback,
            "experts": {name: spec.describe() for name, spec in self.config.experts.items()},
            "documents_per_expert": {task: dict(sorted(c.items())) for task, c in sorted(counts.items())},
            "expert_loads": figures["expert_loads"],
            **({"expert_loads_per_rank": [part["expert_loads"] for part in ranks.figures]}
               if ranks is not None and len(ranks.figures) > 1 else {}),
            "answers_from_result_cache": figures["answers_from_result_cache"],
            "router_seconds": figures["router_seconds"],
            **({"memory": figures["memory"]} if figures["memory"] is not None else {}),
            "spend": self.spend(called, figures["spend"]),
            "cost_routing": self.cost_routing(),
        }

    def cost_routing(self) -> dict[str, Any] | None:
        """The cost setting the run routed under: the cost-aware router's own record, or a cascade's
        escalation threshold and what fixed it; None when routing weighed accuracy alone."""
        if hasattr(self.router, "describe"):
            return self.router.describe()
        config = self.config
        if self.router.kind != "cascade" or (config.cost_weight is None and config.budget is None):
            return None
        return {"cost_weight": config.cost_weight, "budget": config.budget.describe() if config.budget else None,
                "gain_threshold": self.gain_threshold,
                "calibration": "the cascade's out-of-fold scores of its fit documents" if config.budget else None}

    def spend(self, documents: Counter, measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Per expert: documents it answered (``documents``; a cascade's first expert answers every
        document it saw), and the ``measured`` requests, generated tokens, wall seconds (answers from the
        result store cost nothing); ``cost`` where the config gives one."""
        out: dict[str, Any] = {}
        for name in self.config.experts:
            row = {"documents": documents.get(name, 0),
                   **measured.get(name, {"requests": 0, "generated_tokens": 0, "wall_seconds": 0.0})}
            if name in self.config.costs:
                amount = row["generated_tokens"] if self.config.cost_unit == "token" else row["documents"]
                row["cost"] = round(self.config.costs[name] * amount, 6)
            out[name] = row
        return out

    def write_routing_log(self, path: Path, rows: Sequence[dict[str, Any]] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            for row in self.log_rows() if rows is None else rows:
                handle.write(json.dumps(row) + "\n")
        return path

    def fingerprint(self) -> str:
        """Identity of the router, the expert set and every setting that changes which expert answers;
        guards lm-eval's --use_cache against stale answers."""
        import hashlib

        config = self.config
        blob = json.dumps({"router": self.router_checksum,
                           "experts": {n: s.identity() for n, s in config.experts.items()},
                           "modalities": {n: [s.modality, s.handles_text_only] for n, s in config.experts.items()},
                           "fallback": config.fallback,
                           "question_field": config.question_field,
                           "router_expert": config.router_expert,
                           "subject_source": config.subject_source,
                           "costs": config.costs,
                           "cost_weight": config.cost_weight,
                           "budget": config.budget.describe() if config.budget else None}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()
