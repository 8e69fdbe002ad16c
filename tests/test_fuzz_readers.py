"""Fuzzing (hypothesis): no config file or sample log, however malformed, crashes the
readers with a bare traceback; each is accepted or rejected with this package's error."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.core.errors import BenchCoEError
from benchcoe_plugins.routers.table import TableRouter
from benchcoe_plugins.training.sample_logs import load_sample_logs

# examples, randomness and deadline come from the profile loaded in conftest.py (derandomized by default)
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=10)
config_keys = st.sampled_from(["router", "fallback", "experts", "question_field", "routing_log", "result_cache",
                               "rank_loading", "checkpoint_every", "name", "bogus"])
expert_entries = st.dictionaries(st.sampled_from(["model", "model_args", "modality", "handles_text_only", "isolated",
                                                  "extra"]), values, max_size=5)
configs = st.dictionaries(config_keys, st.one_of(values, st.dictionaries(st.sampled_from(["a", "b"]), expert_entries,
                                                                         max_size=2)), max_size=8)


def make_router(folder: Path) -> Path:
    router = folder / "router"
    if not router.exists():
        TableRouter.from_table({"biology": "a"}, experts=["a"]).save(router)
    return router


@FUZZ
@given(config=configs)
def test_config_reader_never_crashes_on_structured_input(tmp_path_factory, config: dict) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    make_router(folder)
    path = folder / "coe.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        load_config(path, known_models=lambda: ["hf", "vllm"])
    except BenchCoEError:
        pass


@FUZZ
@given(text=st.text(max_size=300))
def test_config_reader_never_crashes_on_arbitrary_text(tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "coe.yaml"
    path.write_text(text)
    try:
        load_config(path, known_models=lambda: ["hf"])
    except BenchCoEError:
        pass


rows = st.dictionaries(st.sampled_from(["doc_id", "doc", "target", "resps", "filtered_resps", "exact_match", "acc",
                                        "doc_hash", "input", "question"]), values, max_size=8)


@FUZZ
@given(lines_a=st.lists(st.one_of(rows.map(json.dumps), st.text(max_size=40)), max_size=6),
       lines_b=st.lists(rows.map(json.dumps), max_size=6))
def test_sample_log_reader_never_crashes(tmp_path_factory, lines_a: list[str], lines_b: list[str]) -> None:
    folder = tmp_path_factory.mktemp("logs")
    paths = {}
    for expert, lines in (("a", lines_a), ("b", lines_b)):
        path = folder / expert / "samples_toy_2026-01-01T00-00-00.jsonl"
        path.parent.mkdir()
        path.write_text("\n".join(lines) + "\n")
        paths[expert] = [path]
    try:
        load_sample_logs(paths)
    except BenchCoEError:
        pass


record_rows = st.dictionaries(st.sampled_from(["question_id", "category", "question", "answer", "pred", "correct",
                                               "id", "response", "subject"]), values, max_size=6)
jsonl_lines = st.lists(st.one_of(record_rows.map(json.dumps), values.map(json.dumps), st.text(max_size=30)), max_size=5)


def write_gz_lines(path: Path, lines: list[str]) -> None:
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


@FUZZ
@given(questions=jsonl_lines, records_a=jsonl_lines, records_b=jsonl_lines)
def test_records_reader_never_crashes(tmp_path_factory, questions, records_a, records_b) -> None:
    from benchcoe_plugins.training.records import load_mmlu_pro

    folder = tmp_path_factory.mktemp("records")
    write_gz_lines(folder / "questions.jsonl.gz", questions)
    write_gz_lines(folder / "records" / "a.jsonl.gz", records_a)
    write_gz_lines(folder / "records" / "b.jsonl.gz", records_b)
    try:
        load_mmlu_pro(folder)
    except BenchCoEError:
        pass


@FUZZ
@given(lines=st.lists(st.one_of(rows.map(json.dumps), record_rows.map(json.dumps), st.text(max_size=30)), max_size=6),
       as_log=st.booleans(), raw=st.binary(max_size=40))
def test_replay_book_reader_never_crashes(tmp_path_factory, lines, as_log: bool, raw: bytes) -> None:
    from benchcoe_plugins.experts.replay import ReplayBook

    folder = tmp_path_factory.mktemp("replay")
    path = folder / ("samples_toy_2026-01-01T00-00-00.jsonl" if as_log else "model.jsonl")
    path.write_bytes(("\n".join(lines) + "\n").encode() + raw)
    try:
        ReplayBook(log=str(path)) if as_log else ReplayBook(records=str(path))
    except BenchCoEError:
        pass


manifests = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(["benchcoe-router", "x"]), "format_version": st.sampled_from([1, 2, "1", None]),
    "kind": st.sampled_from(["table", "subject", "query", "bogus"]), "params": values, "experts": values,
    "subjects": values, "table": values, "name": values})


@FUZZ
@given(manifest=manifests, damage=st.sampled_from(["manifest", "state", "raw"]), raw=st.binary(max_size=60))
@example(manifest={"format": "benchcoe-router", "table": {"": []}}, damage="manifest", raw=b"")  # found by fuzzing
def test_router_folder_reader_never_crashes(tmp_path_factory, manifest: dict, damage: str, raw: bytes) -> None:
    from benchcoe_plugins.routers.base import MANIFEST_NAME
    from benchcoe_plugins.routers.registry import load_router

    folder = make_router(tmp_path_factory.mktemp("router"))
    if damage == "manifest":
        good = json.loads((folder / MANIFEST_NAME).read_text())
        (folder / MANIFEST_NAME).write_text(json.dumps({**good, **manifest}))
    elif damage == "state":
        for file in folder.iterdir():
            if file.name != MANIFEST_NAME:
                file.write_bytes(raw)
    else:
        (folder / MANIFEST_NAME).write_bytes(raw)
    try:
        load_router(folder)
    except BenchCoEError:
        pass
