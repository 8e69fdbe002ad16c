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


def _load_rows(env: dict, cwd) -> str:
    script = ("import datasets\n"
              "d = datasets.load_dataset('TIGER-Lab/MMLU-Pro')\n"
              "print(d['test'].num_rows, d['test'][0]['question_id'])\n")
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


@pytest.mark.slow
def test_a_damaged_seed_is_set_aside_and_a_download_is_never_hidden_unasked(tmp_path) -> None:
    """The real CLI and a real offline ``datasets.load_dataset``: an interrupted copy of the seeded
    folder, a killed download's ``.incomplete`` folder, a corrupt marker, and a copy benchcoe did not
    write (a download), which stays what offline loads read unless ``--force``."""
    import datasets
    import pyarrow as pa

    from benchcoe_plugins.offline.cache import MARKER, write_cache_folder

    env = harness_env({"HF_HOME": str(tmp_path / "hf")})
    seeded = run_cli(["benchcoe", "offline-data"], cwd=tmp_path, env=env).stdout
    folder = next(line.split()[2] for line in seeded.splitlines() if line.startswith("TIGER-Lab/MMLU-Pro: seeded"))
    arrow = tmp_path / folder / "mmlu-pro-test.arrow"
    arrow.write_bytes(arrow.read_bytes()[:1000])  # an interrupted copy of the cache
    (arrow.parents[1] / "0123abcd.incomplete").mkdir()  # what a killed download leaves behind
    assert run_cli(["benchcoe", "offline-data", "--check"], cwd=tmp_path, env=env, check=False).returncode == 1
    repaired = run_cli(["benchcoe", "offline-data"], cwd=tmp_path, env=env)
    assert "set aside" in repaired.stderr and "0123abcd.incomplete" in repaired.stderr
    assert _load_rows(env, tmp_path).startswith("11962 ")
    (tmp_path / folder / MARKER).write_text('{"rows":')
    again = run_cli(["benchcoe", "offline-data"], cwd=tmp_path, env=env)
    assert "does not read back whole" in again.stderr and "0123abcd" not in again.stderr, "set aside once"
    assert run_cli(["benchcoe", "offline-data", "--check"], cwd=tmp_path, env=env).returncode == 0

    # a download: the same dataset folder without benchcoe's marker, written after the seed
    features = datasets.Features({"question_id": datasets.Value("int64"), "question": datasets.Value("string")})
    download = arrow.parents[1] / "fedcba98"
    write_cache_folder(download, "mmlu-pro", "default", features,
                       {"test": pa.table({"question_id": [7], "question": ["q"]}), "validation": pa.table(
                           {"question_id": [8], "question": ["v"]})}, {}, description="stand-in download")
    (download / MARKER).unlink()
    kept = run_cli(["benchcoe", "offline-data"], cwd=tmp_path, env=env)
    assert "not seeded" in kept.stdout and str(download) in kept.stdout
    checked = run_cli(["benchcoe", "offline-data", "--check"], cwd=tmp_path, env=env, check=False)
    assert checked.returncode == 1 and str(download) in checked.stdout
    assert _load_rows(env, tmp_path) == "1 7", "the download stays what offline loads read"
    forced = run_cli(["benchcoe", "offline-data", "--force"], cwd=tmp_path, env=env)
    assert "now hidden" in forced.stderr and download.is_dir()
    assert _load_rows(env, tmp_path).startswith("11962 ")


def test_check_hashes_each_shipped_copy_once(tmp_path, monkeypatch, capsys) -> None:
    """``offline-data --check`` names each seeded folder by the hash of the shipped files, and reads
    the files for that hash once per copy (the real hash runs; the wrapper only counts)."""
    from benchcoe_plugins.cli import main
    from benchcoe_plugins.offline import cache, mmmu_pro, seed

    hashed: list[list[str]] = []

    def counted_hash(files, *extra: str) -> str:
        files = list(files)
        hashed.append([f"{path.parent.name}/{path.name}" for path in files])
        return cache.content_hash(files, *extra)

    for module in (seed, mmmu_pro):
        monkeypatch.setattr(module, "content_hash", counted_hash)
    assert main(["offline-data", "--check", "--cache-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.count("NOT seeded") == 2
    assert hashed == [["mmlu_pro/test.parquet", "mmlu_pro/validation.parquet"], ["mmmu_pro/test.parquet"]]
