"""The result cache under real ``lm_eval --model coe`` reruns with replay experts (no weights): a
resumed run gives every repeat its own answer, keeps documents of two tasks with the same prompt
apart, recomputes stored values of the wrong shape, and --use_cache refuses a changed routing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from benchcoe_plugins.routers.table import TableRouter
from conftest import read_samples, run_cli

DOCS = 4


@pytest.fixture(scope="module")
def replay_workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("replay_keys")
    tasks = root / "tasks"
    tasks.mkdir()
    rows = [{"question": f"Q{i}", "subject": ["biology", "law"][i % 2], "answer": "x"} for i in range(DOCS)]
    (tasks / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"dataset_path": "json", "dataset_kwargs": {"data_files": str(tasks / "data.jsonl")},
            "test_split": "train", "output_type": "generate_until", "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_target": "answer", "generation_kwargs": {"until": ["\n"], "do_sample": False},
            "metric_list": [{"metric": "exact_match"}]}
    for task, extra in (("toy_rep", {"repeats": 3}), ("toy_a", {}), ("toy_b", {})):
        (tasks / f"{task}.yaml").write_text(yaml.safe_dump({"task": task, **extra, **base}))
    for expert in ("alpha", "beta"):
        logs = root / f"logs_{expert}"
        logs.mkdir()
        for task in ("toy_rep", "toy_a", "toy_b"):
            copies = 3 if task == "toy_rep" else 1
            lines = [json.dumps({"doc_id": i, "resps": [[recorded(expert, task, i, k) for k in range(copies)]]})
                     for i in range(DOCS)]
            (logs / f"samples_{task}_2024-01-01T00-00-00.jsonl").write_text("\n".join(lines) + "\n")
    TableRouter.from_table({"biology": "alpha", "law": "beta"}, experts=["alpha", "beta"]).save(root / "router")
    config = {"name": "keys", "router": "router", "fallback": "alpha", "question_field": {"toy_*": "question"},
              "result_cache": str(root / "result_cache"),
              "experts": {e: {"model": "coe_replay", "model_args": {"log": str(root / f"logs_{e}")}}
                          for e in ("alpha", "beta")}}
    (root / "coe.yaml").write_text(yaml.safe_dump(config))
    swapped = {**config, "experts": {"alpha": {**config["experts"]["alpha"], "router_expert": "beta"},
                                     "beta": {**config["experts"]["beta"], "router_expert": "alpha"}}}
    (root / "swapped.yaml").write_text(yaml.safe_dump(swapped))
    return root


def recorded(expert: str, task: str, doc: int, copy: int) -> str:
    return f"{expert}-{task}-d{doc}-r{copy}"


def expected(task: str, doc: int) -> list[str]:
    expert = ["alpha", "beta"][doc % 2]
    return [recorded(expert, task, doc, k) for k in range(3 if task == "toy_rep" else 1)]


def run(root: Path, out: str, config: str = "coe.yaml", *extra: str, check: bool = True):
    command = ["lm_eval", "--model", "coe", "--model_args", f"config={config}", "--tasks", "toy_rep,toy_a,toy_b",
               "--include_path", str(root / "tasks"), "--output_path", str(root / out), "--log_samples", *extra]
    return run_cli(command, cwd=root, check=check)


def answers(root: Path, out: str) -> dict[tuple[str, int], list[str]]:
    return {key: row["resps"][0] for key, row in read_samples(root / out).items()}


def test_resumed_runs_keep_repeats_and_same_prompt_documents_apart(replay_workspace: Path) -> None:
    truth = {(task, i): expected(task, i) for task in ("toy_rep", "toy_a", "toy_b") for i in range(DOCS)}
    run(replay_workspace, "first")
    assert answers(replay_workspace, "first") == truth
    run(replay_workspace, "resumed")
    assert answers(replay_workspace, "resumed") == truth, "the result cache answers as the experts did"

    for path in (replay_workspace / "result_cache").glob("*.sqlite"):
        with sqlite3.connect(path) as connection:
            keys = [k for (k,) in connection.execute("SELECT key FROM answers")]
            connection.execute("UPDATE answers SET value = ? WHERE key = ?", ("[" * 100_000 + "]" * 100_000, keys[0]))
            connection.execute("UPDATE answers SET value = ? WHERE key = ?", ('{"a": 1}', keys[1]))
    damaged = run(replay_workspace, "damaged")
    assert answers(replay_workspace, "damaged") == truth, "damaged entries are recomputed, not served"
    assert "wrong shape" in damaged.stderr and "nested too deeply" in damaged.stderr


def test_use_cache_refuses_a_changed_routing(replay_workspace: Path) -> None:
    cache = str(replay_workspace / "lm_cache" / "db")
    run(replay_workspace, "cached", "coe.yaml", "--use_cache", cache)
    refused = run(replay_workspace, "swapped", "swapped.yaml", "--use_cache", cache, check=False)
    assert refused.returncode != 0 and "holds answers of another model, router or expert set" in refused.stderr


def test_a_rank_never_sets_aside_another_ranks_store_file(tmp_path) -> None:
    """Every rank opens its store at once; rank 0 reading a sibling that rank 1 is still creating must
    leave it where it is (moving it would leave rank 1 writing to a file that is gone)."""
    import sqlite3

    from benchcoe_plugins.experts.result_store import FORMAT, VERSION, ResultStore

    creating = sqlite3.connect(tmp_path / "ident.rank1.sqlite", isolation_level=None)
    creating.execute("BEGIN IMMEDIATE")  # rank 1 inside its create transaction: no tables visible yet
    creating.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    creating.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value TEXT)")
    creating.execute("INSERT INTO meta VALUES ('format', ?), ('version', ?)", (FORMAT, str(VERSION)))
    assert ResultStore(tmp_path, "ident", rank=0).get_many(["k1"]) == {}
    creating.execute("COMMIT")
    creating.execute("INSERT INTO answers VALUES ('k1', ?)", ('"x"',))  # would fail if its file had been moved
    assert not list(tmp_path.glob("*.unusable-*"))
    assert ResultStore(tmp_path, "ident", rank=0).get_many(["k1"]) == {"k1": "x"}
    (tmp_path / "ident.rank2.sqlite").write_bytes(b"not a database")
    assert ResultStore(tmp_path, "ident", rank=0).get_many(["k2"]) == {}
    assert (tmp_path / "ident.rank2.sqlite").exists(), "another rank's damaged file is skipped, not moved"
