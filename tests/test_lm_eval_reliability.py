"""Failures mid-run, resume, data parallelism and worker-process experts, through the real
``lm_eval`` CLI on the shared toy workspace."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from coe_workspace import TASKS, lm_eval, lm_eval_command, workspace_env
from conftest import BIN, free_port, read_results, read_samples, run_cli

pytestmark = pytest.mark.slow


def test_failed_expert_keeps_finished_answers_and_rerun_resumes(workspace, runs, tiny_experts, tmp_path) -> None:
    broken = tmp_path / "beta_copy"
    shutil.copytree(tiny_experts["beta"], broken)
    weights = broken / "model.safetensors"
    weights.rename(tmp_path / "weights.bak")  # beta (loaded after alpha) fails to load
    store = tmp_path / "store"
    args = f"config=coe.yaml,result_cache={store},experts.beta.model_args.pretrained={broken}"
    command = lm_eval_command(workspace, "coe", args, str(tmp_path / "out"))

    failed = run_cli(command, cwd=workspace, env=workspace_env(workspace), check=False)
    assert failed.returncode != 0
    assert "expert 'beta' (hf) failed" in failed.stderr and "rerun the same command" in failed.stderr
    assert list(store.glob("*.sqlite")), "alpha's finished answers are on disk"

    (tmp_path / "weights.bak").rename(weights)
    run_cli(command, cwd=workspace, env=workspace_env(workspace))
    summary = read_results(tmp_path / "out")["config"]["coe"]
    assert summary["expert_loads"] == {"beta": 1}, "alpha finished before the failure and is not loaded again"
    assert summary["answers_from_result_cache"]["alpha"] > 0
    resumed, uninterrupted = read_samples(tmp_path / "out"), read_samples(runs["coe"])
    assert {k: r["resps"] for k, r in resumed.items()} == {k: r["resps"] for k, r in uninterrupted.items()}


def assert_same_answer(first, second, key) -> None:
    """Generations equal exactly; log-likelihoods to 1e-5, since a rank batches another share of the
    requests and float sums then differ in the last bits (as with lm-eval's hf model alone)."""
    if isinstance(second, list):  # [logprob, is_greedy] as lm-eval logs it
        assert float(first[0]) == pytest.approx(float(second[0]), abs=1e-5) and first[1] == second[1], key
    else:
        assert first == second, key


def routing(output: Path) -> dict:
    rows = [json.loads(line) for path in output.rglob("routing_*.jsonl") for line in path.read_text().splitlines()]
    return {(r["task"], r["doc_id"]): r["expert"] for r in rows}


@pytest.mark.parametrize("rank_loading", ["needed", "all"])
def test_two_processes_equal_one(workspace, runs, tmp_path, rank_loading: str) -> None:
    # "all": every task, in reverse order. "needed": toy_gen's first two documents, which lm-eval deals one
    # to each rank (biology -> alpha on rank 0, law -> beta on rank 1), so each rank needs one expert.
    tasks, extra = ((",".join(reversed(TASKS.split(","))), ()) if rank_loading == "all"
                    else ("toy_gen", ("--limit", "2")))
    out = lm_eval(workspace, "coe", f"config=coe.yaml,result_cache=False,rank_loading={rank_loading}",
                  str(tmp_path / "out"), *extra, tasks=tasks,
                  launcher=(str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port())))
    two, one = read_samples(out), read_samples(runs["coe"])
    assert two.keys() == one.keys() if rank_loading == "all" else (two.keys() < one.keys() and len(two) == 2)
    for key in two:
        # lm-eval pads the shorter rank with copies of its last request object, whose resps then hold
        # the same answer several times (lm-eval's own behaviour, with any model): compare first answers
        for answers_two, answers_one in zip(two[key]["resps"], one[key]["resps"], strict=True):
            assert_same_answer(answers_two[0], answers_one[0], key)
        assert two[key]["filtered_resps"] == one[key]["filtered_resps"] or key[0] != "toy_gen", key
    routed_once = routing(runs["coe"])
    assert routing(out) == {k: routed_once[k] for k in two}, "routing does not depend on processes or task order"
    coe = read_results(out)["config"]["coe"]
    per_rank = coe["expert_loads_per_rank"]
    if rank_loading == "all":
        assert per_rank == [{"alpha": 1, "beta": 1}] * 2, "every rank loads every expert, in the same order"
    else:
        assert per_rank == [{"alpha": 1}, {"beta": 1}], "each rank loads only the expert its documents need"
    # rank 0 writes the record, and its figures cover both ranks
    assert coe["expert_loads"] == dict(sum((Counter(loads) for loads in per_rank), Counter()))
    requests = {e: row["requests"] for e, row in coe["spend"].items()}
    if rank_loading == "all":
        # every request of one process (run or taken from its result cache), plus the copies of a rank's last
        # request that lm-eval pads the shorter rank with, which the experts answer too
        alone = read_results(runs["coe"])["config"]["coe"]
        assert all(requests[e] >= row["requests"] + alone["answers_from_result_cache"].get(e, 0)
                   for e, row in alone["spend"].items()), (requests, alone["spend"])
    else:
        assert requests == {"alpha": 1, "beta": 1}, "one generated answer per toy_gen document, one on each rank"
    assert all(row["wall_seconds"] > 0 for row in coe["spend"].values())


def test_isolated_expert_runs_in_a_worker_process_with_identical_answers(workspace, runs, tmp_path) -> None:
    """Stand-in for vLLM (no GPU here): the `hf` experts run isolated, in worker processes, the way
    vllm experts run by default so that their GPU memory is returned when they are freed."""
    out = lm_eval(workspace, "coe", "config=coe.yaml,result_cache=False,experts.alpha.isolated=True,"
                  "experts.beta.isolated=True", str(tmp_path / "out"))
    summary = read_results(out)["config"]["coe"]
    assert summary["experts"]["alpha"]["isolated"] and summary["experts"]["beta"]["isolated"]
    workers = {summary["spend"][e]["process"] for e in ("alpha", "beta")}
    assert all(w.startswith("worker ") for w in workers) and len(workers) == 2, "each in a worker of its own"
    assert {e["process"] for e in read_results(runs["coe"])["config"]["coe"]["spend"].values() if e["requests"]} == \
        {"harness"}
    assert {k: r["resps"] for k, r in read_samples(out).items()} == \
        {k: r["resps"] for k, r in read_samples(runs["coe"]).items()}
