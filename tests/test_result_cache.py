"""The result cache: answers as JSON (no pickle), a key that covers what changes an answer,
and survival of damaged files, unwritable folders and runs sharing a cache."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest

from benchcoe_plugins.experts.result_store import ResultStore
from benchcoe_plugins.experts.sampling import seed_if_sampling
from benchcoe_plugins.experts.spec import ExpertSpec

ANSWERS = [("k1", "some text"), ("k2", (-1.25, True)), ("k3", -3.5), ("k4", ["a", {"b": (1, 2)}])]


class PlantedPayload:
    """Unpickling this runs ``touch <marker>``: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_answers_round_trip_with_their_types(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, "ident")
    store.put_many(ANSWERS)
    store.close()
    assert ResultStore(tmp_path, "ident").get_many(k for k, _ in ANSWERS) == dict(ANSWERS)


def test_unencodable_answers_are_one_warning_per_batch_and_the_rest_is_stored(tmp_path: Path, caplog) -> None:
    store = ResultStore(tmp_path, "ident")
    with caplog.at_level(logging.WARNING):
        store.put_many([("a", object()), ("b", "kept"), ("c", {1: "x"}), ("d", object())])
    warnings = [r.getMessage() for r in caplog.records if "not caching" in r.getMessage()]
    assert len(warnings) == 1 and "3 answer(s)" in warnings[0], warnings
    assert store.get_many(["a", "b", "c", "d"]) == {"b": "kept"}


def test_planted_pickle_values_run_nothing_and_are_ignored(tmp_path: Path, caplog) -> None:
    store = ResultStore(tmp_path, "ident")
    store.put_many(ANSWERS)
    store.close()
    marker = tmp_path / "pwned"
    with sqlite3.connect(tmp_path / "ident.rank0.sqlite") as connection:
        connection.execute("UPDATE answers SET value = ? WHERE key = 'k1'", (pickle.dumps(PlantedPayload(marker)),))
    with caplog.at_level(logging.WARNING):
        found = ResultStore(tmp_path, "ident").get_many(k for k, _ in ANSWERS)
    assert not marker.exists()
    assert "k1" not in found and found["k2"] == (-1.25, True)
    assert sum("not JSON answers" in r.message for r in caplog.records) == 1


def write_old_pickle_store(path: Path, marker: Path) -> None:
    """The previous format (answers BLOB = pickle), as a planted file would look."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value BLOB)")
        connection.execute("INSERT INTO answers VALUES ('k1', ?)", (pickle.dumps(PlantedPayload(marker)),))


def newer_format(path: Path) -> None:
    ResultStore(path.parent, path.name.split(".")[0]).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'version'")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign_schema", "old_pickle_format", "newer_format"])
def test_unusable_file_is_moved_aside_with_one_warning(tmp_path: Path, caplog, damage: str) -> None:
    path = tmp_path / "ident.rank0.sqlite"
    marker = tmp_path / "pwned"
    if damage == "truncated":
        store = ResultStore(tmp_path, "ident")
        store.put_many((f"k{i}", "x" * 500) for i in range(200))
        store.close()
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(random.Random(0).randbytes(3000))  # fixed garbage
    elif damage == "foreign_schema":
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE notes (id INTEGER, text TEXT)")
    elif damage == "old_pickle_format":
        write_old_pickle_store(path, marker)
    else:
        newer_format(path)
    with caplog.at_level(logging.WARNING):
        store = ResultStore(tmp_path, "ident")
        assert store.get_many(["k1"]) == {}
        store.put_many([("k1", "fresh")])
        assert store.get_many(["k1"]) == {"k1": "fresh"}
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "moved it to" in warnings[0], warnings
    assert len(list(tmp_path.glob("ident.rank0.sqlite.unusable-*"))) == 1
    assert not marker.exists()


def test_unwritable_folder_warns_once_and_runs_uncached(tmp_path: Path, caplog) -> None:
    """A read-only folder (a file in the way where root ignores permissions)."""
    (tmp_path / "occupied").write_text("a file, not a folder")
    folder = tmp_path / "occupied" / "cache" if os.geteuid() == 0 else tmp_path / "cache"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o500)
    try:
        with caplog.at_level(logging.WARNING):
            store = ResultStore(folder, "ident")
            store.put_many(ANSWERS)
            assert store.get_many(["k1"]) == {}
    finally:
        if folder.exists():
            folder.chmod(0o700)
    assert not store.usable
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "without caching" in warnings[0]


def _writer(folder: str, worker: int, rounds: int) -> None:
    store = ResultStore(Path(folder), "shared")
    for round_ in range(rounds):
        store.put_many((f"{worker}-{round_}-{i}", [worker, round_, i]) for i in range(20))
        store.put_many((f"common-{i}", ("same", i)) for i in range(20))  # both runs write the same answers
        assert store.get_many(f"common-{i}" for i in range(20)) == {f"common-{i}": ("same", i) for i in range(20)}
    store.close()


def test_two_processes_sharing_a_cache_stay_correct(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0]
    keys = [f"{w}-{r}-{i}" for w in (1, 2) for r in range(15) for i in range(20)]
    found = ResultStore(tmp_path, "shared").get_many(keys)
    assert found == {k: [int(part) for part in k.split("-")] for k in keys}
    assert not list(tmp_path.glob("*.unusable-*"))


def test_weights_rewritten_same_size_same_mtime_change_the_identity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCHCOE_CACHE", str(tmp_path / "benchcoe"))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"\x01" * 4096)
    (weights / "tokenizer_config.json").write_text('{"chat_template": "A"}')
    spec = ExpertSpec("a", "hf", {"pretrained": str(weights)})
    first = spec.identity()
    assert spec.identity() == first, "an unchanged expert keeps its identity"

    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"\x02" * 4096)
    stat = (weights / "model.safetensors").stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    shutil.copy2(replacement, weights / "model.safetensors")  # cp -p: same size, mtime kept
    assert (weights / "model.safetensors").stat().st_mtime_ns == stat.st_mtime_ns
    assert spec.identity() != first

    second = spec.identity()
    template = weights / "tokenizer_config.json"
    stat = template.stat()
    template.write_text('{"chat_template": "B"}')  # another chat template, same size
    os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert spec.identity() != second


def test_a_rewritten_peft_adapter_changes_the_identity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCHCOE_CACHE", str(tmp_path / "benchcoe"))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"\x01" * 64)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    spec = ExpertSpec("a", "hf", {"pretrained": str(tmp_path / "weights"), "peft": str(adapter)})
    first = spec.identity()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x02" * 64)  # new adapter, same path and size
    assert spec.identity() != first
    assert ExpertSpec("a", "hf", {"pretrained": str(tmp_path / "weights")}).identity() != spec.identity()
    from benchcoe_plugins.core.provenance import expert_revision
    from benchcoe_plugins.experts.weights_identity import local_weights_hash

    assert expert_revision(spec)["adapters"] == {"peft": "sha256:" + local_weights_hash(adapter)}


def test_seed_is_part_of_the_key_only_when_sampling() -> None:
    import torch

    torch.manual_seed(1)
    greedy = ("ctx", {"until": ["\n"], "do_sample": False})
    sampled = ("ctx", {"do_sample": True, "temperature": 1.0})
    assert seed_if_sampling(greedy) == {} and seed_if_sampling(("ctx", {"temperature": 0})) == {}
    assert seed_if_sampling(sampled) == {"seed": 1} and seed_if_sampling(("ctx", {"temperature": 0.7})) == {"seed": 1}
    torch.manual_seed(2)
    assert seed_if_sampling(sampled) == {"seed": 2}


@pytest.mark.slow
def test_lm_eval_reruns_reuse_only_answers_that_would_not_change(workspace, tmp_path: Path) -> None:
    """Real ``lm_eval --model coe``: an unchanged sampled rerun loads nothing; another --seed
    recomputes; planted pickle values run nothing and are recomputed."""
    from coe_workspace import lm_eval_command, workspace_env
    from conftest import read_results, read_samples, run_cli

    store = tmp_path / "store"
    env = {**workspace_env(workspace), "BENCHCOE_CACHE": str(tmp_path / "benchcoe")}

    def run(out: str, seed: str) -> tuple[dict, dict, str]:
        command = lm_eval_command(workspace, "coe", f"config=coe.yaml,result_cache={store}", str(tmp_path / out),
                                  "--gen_kwargs", "max_gen_toks=8,do_sample=True,temperature=1.0", "--seed", seed,
                                  tasks="toy_gen")
        result = run_cli(command, cwd=workspace, env=env)
        return read_results(tmp_path / out)["config"]["coe"], read_samples(tmp_path / out), result.stderr

    first, first_samples, _ = run("out1", "1")
    assert sum(first["expert_loads"].values()) >= 1
    again, again_samples, _ = run("out2", "1")
    assert again["expert_loads"] == {}, "an unchanged rerun loads no expert"
    assert {k: r["resps"] for k, r in again_samples.items()} == {k: r["resps"] for k, r in first_samples.items()}
    other_seed, _, _ = run("out3", "2")
    assert other_seed["expert_loads"] == first["expert_loads"], "a sampled run with another seed recomputes"

    marker = tmp_path / "pwned"
    for path in store.glob("*.sqlite"):
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE answers SET value = ?", (pickle.dumps(PlantedPayload(marker)),))
    planted, _, stderr = run("out4", "2")
    assert not marker.exists(), "nothing read from the cache is unpickled"
    assert planted["expert_loads"] == first["expert_loads"], "the planted entries are recomputed"
    assert "not JSON answers" in stderr


def test_a_separate_tokenizer_is_part_of_the_identity_and_of_the_record(tmp_path: Path, monkeypatch) -> None:
    """``tokenizer=`` apart from the weights: its chat template shapes every prompt, so a changed one must
    not be served the old answers, and ``benchcoe rerun`` must see the change."""
    monkeypatch.setenv("BENCHCOE_CACHE", str(tmp_path / "benchcoe"))
    for name in ("weights", "tokenizer"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ plain }}"}))
    spec = ExpertSpec("a", "hf", {"pretrained": str(tmp_path / "weights"), "tokenizer": str(tmp_path / "tokenizer")})
    first = spec.identity()
    from benchcoe_plugins.core.provenance import expert_revision

    recorded = expert_revision(spec)
    (tmp_path / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ tagged }}"}))
    assert spec.identity() != first
    now = expert_revision(spec)
    assert now["chat_template_sha256"] != recorded["chat_template_sha256"] and now["tokenizer"] != recorded["tokenizer"]


def test_record_paths_with_glob_characters_in_their_names_are_hashed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCHCOE_CACHE", str(tmp_path / "benchcoe"))
    log = tmp_path / "logs [alpha]" / "a.jsonl"
    log.parent.mkdir()
    log.write_text(json.dumps({"id": "a", "pred": "A"}) + "\n")
    for records in ([str(log)], str(log.parent)):
        spec = ExpertSpec("r", "coe_replay", {"records": records, "key": "id"})
        first = spec.identity()
        log.write_text(json.dumps({"id": "a", "pred": "B"}) + "\n")  # same size, new answer
        assert spec.identity() != first, records
        log.write_text(json.dumps({"id": "a", "pred": "A"}) + "\n")


def test_benchcoe_cache_lists_and_clears(tmp_path: Path) -> None:
    from conftest import run_cli

    for identity, label, count in (("aaaa1111", "alpha (hf /m/alpha)", 3), ("bbbb2222", "beta (hf /m/beta)", 5)):
        store = ResultStore(tmp_path, identity, label=label)
        store.put_many((f"k{i}", i) for i in range(count))
        store.close()
    (tmp_path / "cccc3333.rank0.sqlite").write_bytes(b"garbage")
    (tmp_path / "dddd4444.rank0.sqlite").mkdir()  # a folder named like a store file is not the cache's
    listing = run_cli(["benchcoe", "cache", "list", "--dir", str(tmp_path)], cwd=tmp_path).stdout
    lines = {line.split()[0]: line for line in listing.splitlines()}
    assert "alpha (hf /m/alpha)" in lines["aaaa1111"] and "3 entries" in lines["aaaa1111"]
    assert "5 entries" in lines["bbbb2222"] and "unusable" in lines["cccc3333"]

    run_cli(["benchcoe", "cache", "clear", "--dir", str(tmp_path), "--expert", "beta"], cwd=tmp_path)
    assert sorted(p.name.split(".")[0] for p in tmp_path.glob("*.sqlite") if p.is_file()) == ["aaaa1111", "cccc3333"]
    missing = run_cli(["benchcoe", "cache", "clear", "--dir", str(tmp_path), "--expert", "zeta"], cwd=tmp_path,
                      check=False)
    assert missing.returncode != 0 and "matches no cached expert" in missing.stderr
    empty = run_cli(["benchcoe", "cache", "clear", "--dir", str(tmp_path), "--expert", ""], cwd=tmp_path, check=False)
    assert empty.returncode != 0 and "--expert is empty" in empty.stderr
    assert sorted(p.name.split(".")[0] for p in tmp_path.glob("*.sqlite") if p.is_file()) == ["aaaa1111", "cccc3333"], \
        "nothing cleared"
    run_cli(["benchcoe", "cache", "clear", "--dir", str(tmp_path)], cwd=tmp_path)
    assert [p.name for p in tmp_path.glob("*.sqlite*")] == ["dddd4444.rank0.sqlite"]


@pytest.mark.parametrize("named_as", ["glob", "list", "folder"])
def test_a_rewritten_record_file_behind_a_glob_list_or_folder_changes_the_identity(tmp_path: Path, monkeypatch,
                                                                                   named_as: str) -> None:
    monkeypatch.setenv("BENCHCOE_CACHE", str(tmp_path / "benchcoe"))
    folder = tmp_path / "records"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.jsonl").write_text(json.dumps({"id": name, "pred": "A"}) + "\n")
    records = {"glob": str(folder / "*.jsonl"), "list": [str(folder / "a.jsonl"), str(folder / "b.jsonl")],
               "folder": str(folder)}[named_as]
    spec = ExpertSpec("r", "coe_replay", {"records": records, "key": "id"})
    first = spec.identity()
    (folder / "b.jsonl").write_text(json.dumps({"id": "b", "pred": "B"}) + "\n")  # same size, new answer
    assert spec.identity() != first


def test_a_multi_round_answer_is_stored_and_counted_as_its_texts(tmp_path: Path) -> None:
    """lmms-eval's multi-round requests answer with one result per round: stored and counted as their texts."""
    from lmms_eval.api.instance import GenerationResult

    from benchcoe_plugins.adapters.lmms_eval.requests import plain_answer
    from benchcoe_plugins.experts.spend import generated_tokens

    rounds = [GenerationResult(text="first round"), GenerationResult(text="the second one")]
    assert plain_answer(rounds) == ["first round", "the second one"]
    store = ResultStore(tmp_path, "ident")
    store.put_many([("k", plain_answer(rounds))])
    assert store.get_many(["k"]) == {"k": ["first round", "the second one"]}
    assert generated_tokens(None, ["one two", plain_answer(rounds)]) == (7, "whitespace words")
