"""lm-eval model ``coe_replay``: answers every request from recorded outputs.

    lm_eval --model coe_replay --model_args log=out/model/ --tasks mmlu_pro_biology
    lm_eval --model coe_replay --model_args records=gemma-7b.jsonl.gz,key=question_id --tasks mmlu_pro

Also an expert of ``coe``: ``experts: {gemma: {model: coe_replay, model_args: {records: ...}}}``.
See ``benchcoe_plugins.experts.replay`` for the formats and the model_args.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from benchcoe_plugins.experts.replay import ReplayRequest, answerer_from_model_args


def _replay_request(request_type: str, request: Instance) -> ReplayRequest:
    args = request.args
    continuation = args[1] if request_type == "loglikelihood" and len(args) > 1 else None
    return ReplayRequest(request_type, request.task_name or "", request.doc_id, request.doc, request.idx,
                         context=args[0] if args and isinstance(args[0], str) else None, continuation=continuation)


class ReplayLM(LM):
    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.answerer = answerer_from_model_args(**model_args)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "ReplayLM":
        from benchcoe_plugins.core.model_args import parse_model_args

        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**extra, **parse_model_args(arg_string)})

    def _replay(self, request_type: str, requests: list[Instance]) -> list[Any]:
        answers = self.answerer.answer_all([_replay_request(request_type, r) for r in requests])
        for request, answer in zip(requests, answers):
            self.cache_hook.add_partial(request_type, request.args, answer)
        return answers

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        return self._replay("generate_until", requests)

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self._replay("loglikelihood", requests)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        return self._replay("loglikelihood_rolling", requests)

    @property
    def tokenizer_name(self) -> str:
        return "coe-replay"

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Replay ignores the prompt; the rendering only has to be deterministic."""
        return "\n".join(f"{m['role']}: {m['content']}" for m in chat_history)
