"""benchmarks/gpu_coe.py in its CPU tiny mode (so the GPU benchmark cannot rot), and the pool's
memory record it reads (BENCHCOE_RECORD_MEMORY)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO, harness_env

from benchcoe_plugins.experts.memory import RECORD_ENV
from benchcoe_plugins.experts.pool import ExpertPool, Job
from benchcoe_plugins.experts.spec import ExpertSpec

SCRIPT = REPO / "benchmarks" / "gpu_coe.py"
CUDA = torch.cuda.is_available()


def pool_run(monkeypatch, record: str | None) -> ExpertPool:
    if record is None:
        monkeypatch.delenv(RECORD_ENV, raising=False)
    else:
        monkeypatch.setenv(RECORD_ENV, record)
    specs = {n: ExpertSpec(n, "hf", {"pretrained": n}) for n in ("a", "b")}
    pool = ExpertPool(specs, build=lambda spec: torch.ones(256, 1024))  # 1 MB of weights per expert
    jobs = [Job(expert, "generate_until", i, str(i)) for i, expert in enumerate("abab")]
    answers = pool.run(jobs, lambda model, kind, requests: [float(model.sum()) + r for r in requests])
    assert answers == [256 * 1024 + i for i in range(4)]
    return pool


def test_pool_records_memory_before_the_first_load_and_after_each_free(monkeypatch) -> None:
    memory = pool_run(monkeypatch, "1").memory
    assert [(m["event"], m["expert"]) for m in memory] == [("baseline", None), ("freed", "a"), ("freed", "b")]
    for snapshot in memory:
        assert snapshot["max_rss_mb"] > 0 and snapshot["rss_mb"] > 0
        assert (snapshot["cuda_allocated_mb"] is None) == (not (CUDA and torch.cuda.is_initialized()))


def test_pool_records_nothing_without_the_variable(monkeypatch) -> None:
    assert pool_run(monkeypatch, None).memory is None
    assert pool_run(monkeypatch, "0").memory is None


@pytest.mark.skipif(CUDA, reason="checks the message given where there is no CUDA")
def test_gpu_size_without_cuda_is_one_clear_line(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--size", "gpu"], cwd=tmp_path, env=harness_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "--size gpu runs on cuda:0, but torch sees no CUDA device here; run it on a GPU machine or use --size tiny"]


@pytest.mark.slow
def test_tiny_mode_runs_the_coe_and_each_expert_alone_on_its_routed_documents(tmp_path) -> None:
    figures_path = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--json", str(figures_path)],
                            cwd=tmp_path, env=harness_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(figures_path.read_text())
    routed = figures["routed"]
    assert sum(routed.values()) == figures["documents"] == 6  # 3 mmlu_pro_biology + 3 leaderboard_mmlu_pro
    assert all(routed.values()), f"tiny mode should give every expert documents: {routed}"
    assert figures["expert_loads"] == {name: 1 for name in routed}
    # every expert alone ran (and answered exactly its routed documents, which the script checks)
    assert set(figures["alone"]) == set(routed)
    assert figures["same_answers"] == figures["documents"]
    memory = figures["memory_record"]
    assert (memory[0]["event"], memory[0]["expert"]) == ("baseline", None)
    assert sorted((m["event"], m["expert"]) for m in memory[1:]) == [("freed", name) for name in sorted(routed)]
    assert 0 < figures["router_seconds"] and 0 < figures["router_percent"] < 100
    for run in [figures["coe"], *figures["alone"].values()]:
        assert 0 < run["evaluation_s"] < run["wall_s"] and run["max_rss_mb"] > 0
    assert math.isfinite(figures["wall_ratio"]) and figures["wall_ratio"] > 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("evaluation wall") and f"ratio {figures['wall_ratio']:.3f}" in line for line in lines)
    assert any(line.startswith("router: ") and "ms per document" in line for line in lines)
    assert any(line.startswith("CPU peak RSS: CoE ") for line in lines)
    if not CUDA:
        assert sum("not measured: no CUDA" in line for line in lines) == 2
