"""Replay experts: a real lm-eval run of a tiny model is reproduced from its --log_samples file;
unrecorded documents fail clearly; records replay scores what the records say; lmms-eval model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import REPO, read_results, read_samples, run_cli, seeded_harness_env

pytestmark = pytest.mark.slow
TASKS = "mmlu_pro_biology,leaderboard_mmlu_pro"
REPLAY = REPO / "tasks" / "mmlu_pro" / "replay"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return seeded_harness_env(tmp_path_factory.mktemp("hf_home"))


@pytest.fixture(scope="module")
def hf_run(env, tiny_experts, tmp_path_factory) -> Path:
    """The stock tasks, offline, on a tiny local model through the real ``lm_eval --model hf``."""
    out = tmp_path_factory.mktemp("hf_run")
    run_cli(["lm_eval", "--model", "hf", "--model_args", f"pretrained={tiny_experts['alpha']},dtype=float32",
             "--tasks", TASKS, "--limit", "2", "--gen_kwargs", "max_gen_toks=8", "--device", "cpu",
             "--batch_size", "1", "--output_path", str(out), "--log_samples"], cwd=out, env=env)
    return out


def replay(env: dict[str, str], cwd: Path, model_args: str, tasks: str, limit: int, check: bool = True):
    out = cwd / "out"
    result = run_cli(["lm_eval", "--model", "coe_replay", "--model_args", model_args, "--tasks", tasks,
                      "--limit", str(limit), "--output_path", str(out), "--log_samples"], cwd=cwd, env=env, check=check)
    return result, out


def test_replay_of_a_log_reproduces_the_run(env, hf_run, tmp_path) -> None:
    _, out = replay(env, tmp_path, f"log={hf_run}", TASKS, 2)
    original, replayed = read_samples(hf_run), read_samples(out)
    assert original.keys() == replayed.keys() and len(original) == 4
    tasks = {task for task, _ in original}
    assert tasks == set(TASKS.split(","))
    for key, row in original.items():
        assert replayed[key]["resps"] == row["resps"], key  # generations and per-choice log-likelihoods
        assert replayed[key]["filtered_resps"] == row["filtered_resps"], key
    original_results, replay_results = read_results(hf_run)["results"], read_results(out)["results"]
    for task in tasks:
        metrics = {k: v for k, v in original_results[task].items() if "," in k}
        assert metrics and all(replay_results[task][k] == v for k, v in metrics.items())


def test_unrecorded_document_is_an_error_naming_task_and_doc(env, hf_run, tmp_path) -> None:
    result, _ = replay(env, tmp_path, f"log={hf_run}", "mmlu_pro_biology", 3, check=False)
    assert result.returncode != 0
    assert "mmlu_pro_biology" in result.stderr and "doc_id 2" in result.stderr and "fallback" in result.stderr


def test_fallback_answers_unrecorded_documents(hf_run) -> None:
    from lm_eval.api.instance import Instance

    from benchcoe_plugins.adapters.lm_eval.replay_lm import ReplayLM

    recorded = read_samples(hf_run)
    model = ReplayLM.create_from_arg_string(f"log={hf_run},fallback=empty", {"batch_size": "1", "device": "cpu"})
    requests = [Instance("generate_until", {"question_id": -1}, ("ctx", {}), 0, ("mmlu_pro_biology", doc_id, 1))
                for doc_id in (0, 2)]
    assert model.generate_until(requests) == [recorded[("mmlu_pro_biology", 0)]["resps"][0][0], ""]
    choice = Instance("loglikelihood", {}, ("ctx", " A"), 0, ("leaderboard_mmlu_pro", 5, 1))
    assert model.loglikelihood([choice]) == [(float("-inf"), False)]


def test_records_replay_scores_exactly_what_the_records_say(env, tmp_path) -> None:
    expert = "gemma-7b"
    _, out = replay(env, tmp_path, f"records={REPLAY / f'{expert}.jsonl.gz'},key=question_id",
                    "mmlu_pro_law,mmlu_pro_math,leaderboard_mmlu_pro", 15)
    with gzip.open(REPLAY / f"{expert}.jsonl.gz", "rt") as handle:
        records = {row["question_id"]: row for row in map(json.loads, handle)}
    samples = read_samples(out)
    assert len(samples) == 45
    for (task, _), row in samples.items():
        record = records[row["doc"]["question_id"]]
        if task == "leaderboard_mmlu_pro":
            # the recorded letter gets log-likelihood 0, the others -inf; with no recorded letter
            # all choices tie and the harness's argmax takes the first one
            chosen = record["pred"] if record["pred"] is not None else "A"
            assert bool(row["acc"]) == (chosen == row["doc"]["answer"]), (task, row["doc_id"])
        else:
            assert bool(row["exact_match"]) == (record["pred"] == row["doc"]["answer"]), (task, row["doc_id"])
    results = read_results(out)["results"]
    law = [r for (t, _), r in samples.items() if t == "mmlu_pro_law"]
    expected = sum(records[r["doc"]["question_id"]]["correct"] for r in law) / len(law)
    assert results["mmlu_pro_law"]["exact_match,custom-extract"] == pytest.approx(expected, abs=1e-12)


def test_lmms_replay_model_answers_from_an_lmms_eval_log(tmp_path) -> None:
    from lmms_eval.api.instance import Instance

    from benchcoe_plugins.adapters.lmms_eval.replay_model import ReplayLMMS
    from benchcoe_plugins.core.errors import RecordsError

    log = tmp_path / "20250101_120000_samples_toy.jsonl"
    rows = [  # the shapes lmms-eval 0.7.3 writes: resps flattened or dropped, values stringified
        {"doc_id": 0, "target": "A", "filtered_resps": "the answer is A", "input": "q0", "doc_hash": "h"},
        {"doc_id": 1, "target": "B", "resps": ["raw B"], "filtered_resps": "B", "input": "q1", "doc_hash": "h"},
        {"doc_id": 2, "target": "A", "resps": [[["-1.5", "False"]], [["-0.25", "True"]]],
         "filtered_resps": [["-1.5", "False"], ["-0.25", "True"]], "input": "q2", "doc_hash": "h"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = ReplayLMMS.create_from_arg_string(f"log={log}", {"batch_size": 1, "device": "cpu"})

    def instance(kind, args, idx=0):
        return Instance(kind, args, idx, metadata={"task": args[-2], "doc_id": args[-3], "repeats": 1})

    def gen(doc_id):
        return instance("generate_until", ("ctx", {}, None, doc_id, "toy", "test"))

    assert model.generate_until([gen(0), gen(1)]) == ["the answer is A", "raw B"]
    lls = [instance("loglikelihood", ("ctx", f" {c}", None, 2, "toy", "test"), i) for i, c in enumerate("AB")]
    assert model.loglikelihood(lls) == [(-1.5, False), (-0.25, True)]
    with pytest.raises(RecordsError, match=r"task 'toy' doc_id 7"):
        model.generate_until([gen(7)])

    records = tmp_path / "expert.jsonl"
    records.write_text(json.dumps({"id": "validation_Art_1", "response": "It is (C)."}) + "\n")
    by_field = ReplayLMMS.create_from_arg_string(f"records={records},key=id")
    by_field.task_dict = {"mmmu_val": {"validation": [{"id": "validation_Art_1"}, {"id": "validation_Art_2"}]}}
    request = instance("generate_until", ("ctx", {}, None, 0, "mmmu_val", "validation"))
    assert by_field.generate_until([request]) == ["It is (C)."]
    with pytest.raises(RecordsError, match="validation_Art_2"):
        by_field.generate_until([instance("generate_until", ("ctx", {}, None, 1, "mmmu_val", "validation"))])
