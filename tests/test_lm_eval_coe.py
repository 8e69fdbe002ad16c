"""The real ``lm_eval`` CLI runs ``--model coe`` over tiny local experts; each document's
responses must equal those of its chosen expert run alone through ``--model hf``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coe_workspace import LIMIT, TASKS, expected_expert, lm_eval, lm_eval_refuses, workspace_env
from conftest import run_cli
from conftest import read_results, read_samples
from benchcoe_plugins.routers.table import TableRouter

pytestmark = pytest.mark.slow


def test_every_document_answered_by_its_expert_exactly(runs) -> None:
    coe = read_samples(runs["coe"])
    alone = {name: read_samples(runs[name]) for name in ("alpha", "beta")}
    assert len(coe) == LIMIT * len(TASKS.split(","))
    assert {task for task, _ in coe} == set(TASKS.split(","))
    differing = 0
    for key, row in coe.items():
        chosen = expected_expert(key[0], row["doc"])
        assert row["resps"] == alone[chosen][key]["resps"], f"{key}: CoE differs from {chosen} alone"
        differing += alone["alpha"][key]["resps"] != alone["beta"][key]["resps"]
    assert differing > 0, "the two experts answer identically: the parity test could not fail"


def test_routing_log_and_results_record_the_coe(runs, workspace) -> None:
    coe = read_samples(runs["coe"])
    logs = list(runs["coe"].rglob("routing_*.jsonl"))
    assert len(logs) == 1, "the routing log is written next to the harness output"
    rows = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert len(rows) == len(coe) == len({(r["task"], r["doc_id"]) for r in rows})
    for row in rows:
        assert row["expert"] == expected_expert(row["task"], coe[(row["task"], row["doc_id"])]["doc"])
        if row["subject"] == "history":
            assert row["reason"].startswith("fallback")
    assert {r["expert"] for r in rows if r["task"].startswith(("mmlu_pro", "leaderboard"))} == {"alpha", "beta"}

    summary = read_results(runs["coe"])["config"]["coe"]
    assert summary["router"]["kind"] == "table" and len(summary["router"]["sha256"]) == 64
    assert set(summary["experts"]) == {"alpha", "beta"}
    for task in TASKS.split(","):
        counts: dict[str, int] = {}
        for (t, _), row in coe.items():
            if t == task:
                expert = expected_expert(t, row["doc"])
                counts[expert] = counts.get(expert, 0) + 1
        assert summary["documents_per_expert"][task] == counts
    assert summary["expert_loads"] == {"alpha": 1, "beta": 1}, "each expert loads once for both request types"


def test_chat_template_is_rendered_by_each_expert(workspace, tiny_experts) -> None:
    chat = ["--apply_chat_template"]
    tasks = "toy_gen,mmlu_pro_biology,mmlu_pro_law"
    coe = read_samples(lm_eval(workspace, "coe", "config=coe.yaml,result_cache=False", "out_coe_chat", *chat,
                               tasks=tasks))
    alone = {name: read_samples(lm_eval(workspace, "hf", f"pretrained={path}", f"out_{name}_chat", *chat,
                                        tasks=tasks))
             for name, path in tiny_experts.items()}
    for key, row in coe.items():
        chosen = alone[expected_expert(key[0], row["doc"])][key]
        assert row["resps"] == chosen["resps"]
    # the two templates differ, so the experts saw different prompts for the same document
    key = next(iter(coe))
    prompts = {name: alone[name][key]["arguments"]["gen_args_0"]["arg_0"] for name in alone}
    assert prompts["alpha"] != prompts["beta"]


def test_bad_config_fails_before_any_model_loads(workspace) -> None:
    bad = yaml.safe_load((workspace / "coe.yaml").read_text())
    bad["experts"]["beta"]["model"] = "hff"
    stderr = lm_eval_refuses(workspace, bad, "bad.yaml")
    assert "experts.beta.model: 'hff' is not a model this harness knows" in stderr


def test_use_cache_never_serves_another_coe(workspace, tmp_path) -> None:
    """lm-eval's CachingLM keys answers by request only; the coe refuses a cache of another CoE."""
    from lm_eval.api.model import CachingLM

    from benchcoe_plugins.adapters.lm_eval.coe_lm import CoELM
    from benchcoe_plugins.core.errors import ConfigError

    cache = str(tmp_path / "cache.db")
    first = CachingLM(CoELM(config=str(workspace / "coe.yaml")), cache)
    first.dbdict["some-request-hash"] = "an answer"
    first.dbdict.commit()
    CachingLM(CoELM(config=str(workspace / "coe.yaml")), cache)  # same CoE: the cache is valid
    TableRouter.from_table({"biology": "beta"}, experts=["alpha", "beta"]).save(tmp_path / "other_router")
    with pytest.raises(ConfigError, match="another model, router or expert set"):
        CachingLM(CoELM(config=str(workspace / "coe.yaml"), router=str(tmp_path / "other_router")), cache)


def test_use_cache_answers_each_document_by_its_own_expert(workspace, tmp_path) -> None:
    """lm-eval's --use_cache keys answers by the prompt alone. A document of another task with the same
    prompt but another subject (so another expert) must get its own expert's answer, and a rerun must
    still log every document's expert."""
    import shutil

    tasks = tmp_path / "tasks"
    shutil.copytree(workspace / "tasks", tasks)  # toy_gen reads the workspace's data by absolute path
    rows = [json.loads(line) for line in (workspace / "tasks" / "toy.jsonl").read_text().splitlines()]
    (tasks / "toy2.jsonl").write_text("".join(json.dumps({**r, "subject": "biology"}) + "\n" for r in rows))
    (tasks / "toy_gen2.yaml").write_text((workspace / "tasks" / "toy_gen.yaml").read_text()
                                         .replace("task: toy_gen", "task: toy_gen2")
                                         .replace(str(workspace / "tasks" / "toy.jsonl"), str(tasks / "toy2.jsonl")))

    def run(task: str, out: str, *extra: str) -> tuple[dict, list[dict]]:
        folder = tmp_path / out
        run_cli(["lm_eval", "--model", "coe", "--model_args", "config=coe.yaml,result_cache=false", "--tasks", task,
                 "--include_path", str(tasks), "--limit", "4", "--batch_size", "1",
                 "--output_path", str(folder), "--log_samples", *extra], cwd=workspace, env=workspace_env(workspace))
        answers = {doc_id: row["resps"] for (_, doc_id), row in read_samples(folder).items()}
        return answers, [json.loads(line) for path in folder.rglob("routing_*.jsonl")
                         for line in path.read_text().splitlines()]

    cache = str(tmp_path / "use_cache" / "c")
    run("toy_gen", "first", "--use_cache", cache)  # law and math documents: beta
    cached, cached_log = run("toy_gen2", "second", "--use_cache", cache)  # same prompts, all biology: alpha
    reference, _ = run("toy_gen2", "reference")
    assert cached == reference
    assert len(cached_log) == 4 and {row["expert"] for row in cached_log} == {"alpha"}
