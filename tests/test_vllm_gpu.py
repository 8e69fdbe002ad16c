"""vLLM experts on a real GPU: each runs in its own worker process, and its GPU memory is
returned before the next expert loads. Skipped where there is no CUDA device or no vllm
(as on CPU-only CI; the worker-process mechanism itself is tested on CPU with `hf`
stand-ins in test_lm_eval_reliability.py)."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (pip install '.[vllm]')"),
]


def test_vllm_experts_return_gpu_memory(tmp_path, tiny_experts_for_vllm) -> None:
    from lm_eval.api.instance import Instance

    from benchcoe_plugins.adapters.lm_eval.coe_lm import CoELM
    from benchcoe_plugins.routers.table import TableRouter

    TableRouter.from_table({"biology": "one", "law": "two"}, experts=["one", "two"]).save(tmp_path / "router")
    config = {
        "router": str(tmp_path / "router"), "fallback": "one", "result_cache": False,
        "experts": {name: {"model": "vllm", "model_args": {"pretrained": str(path), "gpu_memory_utilization": 0.3,
                                                           "tensor_parallel_size": 1, "max_model_len": 512}}
                    for name, path in tiny_experts_for_vllm.items()},
    }
    coe = CoELM(config=config)
    assert all(spec.isolated for spec in coe.config.experts.values()), "vllm experts are isolated by default"
    free_before, _ = torch.cuda.mem_get_info()
    requests = [Instance("generate_until", {"subject": s, "question": f"q{i}"}, (f"Question {i}:", {"max_gen_toks": 4}),
                         idx=0, metadata=("toy", i, 1)) for i, s in enumerate(["biology", "law"] * 2)]
    answers = coe.generate_until(requests)
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
    assert coe.session.pool.loads == {"one": 1, "two": 1}
    free_after, _ = torch.cuda.mem_get_info()
    assert free_after >= free_before - 256 * 2**20, "GPU memory of finished vllm experts was not returned"


@pytest.fixture()
def tiny_experts_for_vllm(tmp_path):
    from tiny_models import build_causal_lm

    # head dimension 64: vLLM's attention kernels do not take the tiny default
    return {name: build_causal_lm(tmp_path / name, seed=i, hidden_size=256, layers=2)
            for i, name in enumerate(["one", "two"])}
