"""Expert lifecycle: load lazily, run each expert's whole share at once, free, resume.

The pool knows experts only through ``build(spec)`` given by a harness adapter and runs
them through ``call(model, request_type, requests)``. Each expert is loaded once for all
the request types it has work for, its answers are written to its ``ResultStore`` as soon
as each call returns, and it is freed before the next expert loads, so peak memory is
that of the largest expert, not the sum.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from benchcoe_plugins.core.errors import ExpertError, brief
from benchcoe_plugins.experts.isolated import IsolatedExpert
from benchcoe_plugins.experts.memory import memory_snapshot, recording_memory
from benchcoe_plugins.experts.result_store import ResultStore, answer_fits
from benchcoe_plugins.experts.spec import ExpertSpec
from benchcoe_plugins.experts.spend import SpendMeter

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One request for one expert. ``key`` identifies the request inside that expert's store."""

    expert: str
    request_type: str
    request: Any
    key: str


def free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class ExpertPool:
    def __init__(
        self,
        specs: dict[str, ExpertSpec],
        build: Callable[[ExpertSpec], Any],
        result_dir: Path | None = None,
        rank: int = 0,
        checkpoint_every: int = 1000,
        plain_answer: Callable[[Any], Any] | None = None,
    ) -> None:
        self.specs = specs
        self.build = build
        self.result_dir = result_dir
        self.rank = rank
        self.checkpoint_every = checkpoint_every
        # a harness's answer object (lmms-eval's GenerationResult) as the plain data the store keeps and
        # the spend meter counts; the harness itself still gets the object
        self.plain_answer = plain_answer or (lambda answer: answer)
        self.loads: Counter[str] = Counter()
        self.from_store: Counter[str] = Counter()
        self.spend = SpendMeter()
        self._loaded_name: str | None = None
        self._loaded_model: Any = None
        self._stores: dict[str, ResultStore] = {}
        self.finished: list[str] = []  # experts whose answers of this run are all stored, for the resume message
        # snapshots before the first load and after each free, only when BENCHCOE_RECORD_MEMORY is set
        self.memory: list[dict[str, Any]] | None = [] if recording_memory() else None

    def _store(self, name: str) -> ResultStore | None:
        if self.result_dir is None:
            return None
        if name not in self._stores:
            spec = self.specs[name]
            label = f"{name} ({spec.model} {spec.weights_reference() or ''})".replace(" )", ")")
            self._stores[name] = ResultStore(self.result_dir, spec.identity(), self.rank, label)
        return self._stores[name]

    def model(self, name: str) -> Any:
        """The loaded model of expert ``name``, loading it (and freeing another) if needed."""
        if self._loaded_name != name:
            self.release()
            if self.memory == []:
                self.memory.append(memory_snapshot("baseline"))
            logger.info("benchcoe: loading expert %r (%s)", name, self.specs[name].model)
            self._loaded_model = self.build(self.specs[name])
            self._loaded_name = name
            self.loads[name] += 1
        return self._loaded_model

    def release(self) -> None:
        if self._loaded_name is not None:
            name = self._loaded_name
            logger.info("benchcoe: freeing expert %r", name)
            if isinstance(self._loaded_model, IsolatedExpert):
                self._loaded_model.close()
            self._loaded_model = None
            self._loaded_name = None
            free_memory()
            if self.memory is not None:
                self.memory.append(memory_snapshot("freed", name))

    def order(self, names: Sequence[str]) -> list[str]:
        """The loaded expert first (no reload), then config order."""
        ordered = [n for n in self.specs if n in set(names)]
        if self._loaded_name in ordered:
            ordered.remove(self._loaded_name)
            ordered.insert(0, self._loaded_name)
        return ordered

    def run(
        self,
        jobs: Sequence[Job],
        call: Callable[[Any, str, list[Any]], list[Any]],
        load_all: bool = False,
        keep_last: bool = False,
        walk: Sequence[str] | None = None,
    ) -> list[Any]:
        """Answers of ``jobs`` in their order. ``load_all`` loads every expert (of ``walk``, default all)
        even without work (collective experts need the same load order on every rank)."""
        results: list[Any] = [None] * len(jobs)
        by_expert: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, job in enumerate(jobs):
            by_expert[job.expert][job.request_type].append(index)
        names = [n for n in self.specs if walk is None or n in walk] if load_all else self.order(list(by_expert))
        finished = self.finished
        for name in names:
            store = self._store(name)
            work = by_expert.get(name, {})
            cached = store.get_many(jobs[i].key for ids in work.values() for i in ids) if store and work else {}
            try:
                if load_all:
                    self.model(name)
                for request_type, indices in work.items():
                    stored = [i for i in indices if jobs[i].key in cached]
                    usable = {i for i in stored if answer_fits(request_type, cached[jobs[i].key])}
                    if len(usable) < len(stored):
                        logger.warning("benchcoe: expert %r's result store holds %s answers of the wrong shape; "
                                       "they are recomputed", name, request_type)
                    todo = [i for i in indices if i not in usable]
                    for i in usable:
                        results[i] = cached[jobs[i].key]
                    self.from_store[name] += len(indices) - len(todo)
                    if not todo:
                        continue
                    logger.info("benchcoe: expert %r answers %d %s requests (%d from its result store)",
                                 name, len(todo), request_type, len(indices) - len(todo))
                    # answers are stored chunk by chunk, so a crash loses at most one chunk
                    for start in range(0, len(todo), self.checkpoint_every):
                        chunk = todo[start:start + self.checkpoint_every]
                        model = self.model(name)
                        started = self.spend.timed()
                        answers = call(model, request_type, [jobs[i].request for i in chunk])
                        if len(answers) != len(chunk):
                            raise RuntimeError(f"returned {len(answers)} answers for {len(chunk)} requests")
                        for i, answer in zip(chunk, answers):
                            results[i] = answer
                        plain = [self.plain_answer(answer) for answer in answers]
                        if store:  # before anything else can fail: these answers may have been paid for
                            store.put_many((jobs[i].key, answer) for i, answer in zip(chunk, plain))
                        self.spend.add(name, model, request_type, plain, started)
            except Exception as error:
                self.release()
                resume = (f"answers of finished experts {[n for n in finished if n != name]} are saved in {self.result_dir}; fix the cause and "
                          f"rerun the same command: finished experts are not run again." if store else
                          "fix the cause and rerun the same command (result_cache is off, so every expert runs again).")
                raise ExpertError(
                    f"expert {name!r} ({self.specs[name].model}) failed: {brief(error)}. {resume}"
                ) from error
            if name not in finished:
                finished.append(name)
            if not (keep_last and name == names[-1]):
                self.release()
        return results

    def close(self) -> None:
        self.release()
        for store in self._stores.values():
            store.close()
        self._stores.clear()
