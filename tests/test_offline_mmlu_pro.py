"""The offline MMLU-Pro copy: content, held-out few-shot examples, seeded cache, task sizes."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, SHARED_DATA, harness_env, run_cli

TASKS = REPO / "tasks" / "mmlu_pro"
HF_COLUMNS = ["question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src"]


def read_parquet(name: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(TASKS / f"{name}.parquet").to_pylist()


def test_copy_has_the_hf_columns_and_holds_out_the_fewshot_examples() -> None:
    test, validation = read_parquet("test"), read_parquet("validation")
    assert list(test[0]) == HF_COLUMNS and list(validation[0]) == HF_COLUMNS
    test_ids = {row["question_id"] for row in test}
    validation_ids = {row["question_id"] for row in validation}
    assert not test_ids & validation_ids, "a few-shot example is also a test question"
    subjects = {row["category"] for row in test}
    per_subject = {s: sum(row["category"] == s for row in validation) for s in subjects}
    assert set(per_subject.values()) == {5}, per_subject
    for row in validation:
        assert row["cot_content"].startswith("A: Let's think step by step. ")
        letters = re.findall(r"answer is \(?([A-J])\)?", row["cot_content"])
        assert letters and letters[0] == row["answer"], row["question_id"]
    assert all(row["cot_content"] == "" for row in test)
    manifest = json.loads((TASKS / "manifest.json").read_text())
    assert sorted(manifest["held_out_question_ids"]) == sorted(validation_ids)


@pytest.mark.skipif(not (SHARED_DATA / "mmlu_pro").is_dir(), reason="needs ../shared/data")
def test_copy_equals_the_source_questions_and_cot_is_a_recorded_correct_output() -> None:
    with gzip.open(SHARED_DATA / "mmlu_pro" / "questions.jsonl.gz", "rt") as handle:
        source = {row["question_id"]: row for row in map(json.loads, handle)}
    copy = {row["question_id"]: row for row in read_parquet("test") + read_parquet("validation")}
    assert copy.keys() == source.keys()
    for question_id, row in source.items():
        assert {k: copy[question_id][k] for k in row} == row
    model = json.loads((TASKS / "manifest.json").read_text())["fewshot_cot_from"]
    with gzip.open(SHARED_DATA / "mmlu_pro" / "records" / f"{model}.jsonl.gz", "rt") as handle:
        records = {row["question_id"]: row for row in map(json.loads, handle)}
    for row in read_parquet("validation"):
        record = records[row["question_id"]]
        assert record["correct"]
        body = row["cot_content"][len("A: Let's think step by step. "):].rstrip(".")
        assert body in record["generated_text"]


@pytest.mark.slow
def test_seeded_cache_gives_stock_tasks_the_offline_documents(tmp_path) -> None:
    env = harness_env({"HF_HOME": str(tmp_path / "hf")})
    assert run_cli(["benchcoe", "offline-data", "--check"], cwd=tmp_path, env=env, check=False).returncode == 1
    seeded = run_cli(["benchcoe", "offline-data"], cwd=tmp_path, env=env)
    assert "TIGER-Lab/MMLU-Pro" in seeded.stdout
    assert run_cli(["benchcoe", "offline-data", "--check"], cwd=tmp_path, env=env).returncode == 0
    script = (
        "import json\n"
        "from lm_eval.tasks import TaskManager, get_task_dict\n"
        "tasks = get_task_dict(['mmlu_pro', 'leaderboard_mmlu_pro'], TaskManager())\n"
        "out = {}\n"
        "def walk(node):\n"
        "    for key, value in node.items():\n"
        "        if isinstance(value, dict): walk(value)\n"
        "        else: out[value.config.task] = [len(value.eval_docs), [d['question_id'] for d in value.fewshot_docs()]]\n"
        "walk(tasks)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    sizes = json.loads(result.stdout.strip().splitlines()[-1])
    held_out = set(json.loads((TASKS / "manifest.json").read_text())["held_out_question_ids"])
    test = read_parquet("test")
    subject_tasks = {k: v for k, v in sizes.items() if k.startswith("mmlu_pro_")}
    assert len(subject_tasks) == 14
    assert sum(n for n, _ in subject_tasks.values()) == len(test) == 12032 - len(held_out)
    assert sizes["leaderboard_mmlu_pro"][0] == len(test)
    for task, (count, fewshot_ids) in subject_tasks.items():
        category = task[len("mmlu_pro_"):].replace("_", " ")
        assert count == sum(row["category"] == category for row in test)
        assert len(fewshot_ids) == 5 and set(fewshot_ids) <= held_out
