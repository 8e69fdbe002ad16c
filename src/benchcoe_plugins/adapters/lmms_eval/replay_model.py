"""lmms-eval model ``coe_replay`` (simple): answers every request from recorded outputs.

    python -m lmms_eval --model coe_replay --model_args log=logs/llava/ --tasks mmstar
    python -m lmms_eval --model coe_replay --model_args records=qwen_vl.jsonl.gz,key=id --tasks mmmu_val

lmms-eval logs keep no ``doc``, so logs are keyed by (task, doc_id); records are keyed by a
document field, read from ``self.task_dict`` (which lmms-eval, or the ``coemodel`` wrapper,
sets on the model). See ``benchcoe_plugins.experts.replay`` for formats and model_args.
"""

from __future__ import annotations

from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.experts.replay import ReplayRequest, answerer_from_model_args


class ReplayLMMS(lmms):
    is_simple = True

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.answerer = answerer_from_model_args(**model_args)
        self.task_dict: dict = {}

    def _doc(self, task: str, split: str | None, doc_id: Any) -> Any:
        if self.answerer.book.key is None:  # keyed by (task, doc_id): no doc needed
            return None
        try:
            return self.task_dict[task][split][doc_id]
        except (KeyError, IndexError, TypeError):
            raise RecordsError(
                f"replay: cannot read document {doc_id} of task {task!r} (split {split!r}) to look up its "
                f"{self.answerer.book.key!r}: the model has no task_dict for it. Run it through lmms-eval, "
                f"or replay a log keyed by (task, doc_id)."
            ) from None

    def _replay(self, request_type: str, requests: list[Instance]) -> list[Any]:
        replay_requests = []
        for request in requests:
            args = request.args
            task, split, doc_id = args[-2], args[-1], args[-3]
            continuation = args[1] if request_type == "loglikelihood" else None
            replay_requests.append(ReplayRequest(request_type, task, doc_id, self._doc(task, split, doc_id),
                                                 request.idx, context=args[0] if isinstance(args[0], str) else None,
                                                 continuation=continuation))
        return self.answerer.answer_all(replay_requests)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        return self._replay("generate_until", requests)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        return self._replay("loglikelihood", requests)

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        return self._replay("generate_until", requests)
