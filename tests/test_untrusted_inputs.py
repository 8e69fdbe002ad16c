"""Data a user hands to ``benchcoe`` that is wrong in ways a reader could silently accept: records that
say "false" as text or twice, scores that are not accuracies, routers with NaN weights, split files
that count a document twice, arguments out of range. Each is one clear line and a non-zero exit,
before anything is fitted or written; none is read as if it were right."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import mmlu_pro_questions, write_mmlu_pro_records
from benchcoe_plugins import cli
from benchcoe_plugins.core.errors import RouterFormatError
from benchcoe_plugins.routers.registry import load_router

REPO = Path(__file__).resolve().parents[1]
EXPERTS = ["Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct"]


def one_error_line(capsys, argv: list[str]) -> str:
    """Runs ``benchcoe ARGV`` in-process; it must fail with exit 2 and exactly one line on stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    assert code == 2, code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(lines), lines
    return errors[0]


def rewrite_gz(path: Path, change) -> None:
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in change(rows))


@pytest.fixture()
def records(tmp_path: Path) -> Path:
    (tmp_path / "records").mkdir()
    return write_mmlu_pro_records(tmp_path / "records", mmlu_pro_questions()[::200], EXPERTS)


@pytest.mark.parametrize("case, words", [
    ("correct as text", "'correct' is 'false', not true / false"),
    ("record twice", "a second record of question_id"),
    ("question twice", "appears twice"),
    ("neither correct nor pred", "neither 'correct' nor 'pred'"),
    ("question not text", "not text"),
])
def test_records_a_reader_could_misread_are_refused(records: Path, tmp_path: Path, capsys, case: str, words: str) -> None:
    expert_file = records / "records" / f"{EXPERTS[1]}.jsonl.gz"
    if case == "correct as text":  # bool("false") is True: every answer would count as right
        rewrite_gz(expert_file, lambda rows: [{**r, "correct": "false"} for r in rows])
    elif case == "record twice":  # the later copy, flipped, would silently win
        rewrite_gz(expert_file, lambda rows: rows + [{**rows[0], "correct": not rows[0]["correct"]}])
    elif case == "question twice":
        rewrite_gz(records / "questions.jsonl.gz", lambda rows: rows + [{**rows[0], "category": "law"}])
    elif case == "neither correct nor pred":
        rewrite_gz(expert_file, lambda rows: [{"question_id": r["question_id"]} for r in rows])
    else:
        rewrite_gz(records / "questions.jsonl.gz", lambda rows: [{**rows[0], "question": 5}, *rows[1:]])
    line = one_error_line(capsys, ["train", "--records", str(records), "--router", "table",
                                   "--output", str(tmp_path / "out")])
    assert words in line and str(records) in line, line
    assert not (tmp_path / "out").exists(), "nothing written"


def test_sample_scores_outside_zero_one_are_not_read_as_accuracy(tmp_path: Path, capsys) -> None:
    for expert, score in (("a", 5.0), ("b", 1.0)):
        log = tmp_path / expert / "samples_toy_2026-01-01T00-00-00.jsonl"
        log.parent.mkdir()
        log.write_text("".join(json.dumps({"doc_id": i, "exact_match": score, "doc": {"question": f"q{i}"}}) + "\n"
                               for i in range(30)))
    line = one_error_line(capsys, ["train", "--samples", f"a={tmp_path / 'a'}", "--samples", f"b={tmp_path / 'b'}",
                                   "--router", "table", "--output", str(tmp_path / "out")])
    assert "'exact_match' is 5.0" in line and "[0, 1]" in line, line


@pytest.mark.parametrize("file, tensor", [("query.safetensors", "expert_head.coef"), ("tfidf.safetensors", "idf")])
def test_a_router_with_a_nan_weight_does_not_load(tmp_path: Path, file: str, tensor: str) -> None:
    """One NaN in a column of the weights that the probe document never touches (sparse features) would
    otherwise load and change some documents' decisions without a word."""
    folder = tmp_path / "router"
    shutil.copytree(REPO / "router_ckpts" / "mmlu_pro_query", folder)
    load_router(folder)  # the intact copy loads
    tensors = load_file(str(folder / file))
    array = tensors[tensor].copy()
    array[..., -1] = np.nan
    save_file({**tensors, tensor: array}, str(folder / file))
    with pytest.raises(RouterFormatError, match=f"NaN or infinite values in {tensor}"):
        load_router(folder)


def test_a_router_naming_an_expert_twice_does_not_load(tmp_path: Path) -> None:
    folder = tmp_path / "router"
    shutil.copytree(REPO / "router_ckpts" / "mmlu_pro_subject", folder)
    manifest = json.loads((folder / "router.json").read_text())
    manifest["experts"][1] = manifest["experts"][0]
    (folder / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(RouterFormatError, match="more than once"):
        load_router(folder)


def test_inspect_reads_a_router_whose_descriptive_sections_are_not_mappings(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "router"
    shutil.copytree(REPO / "router_ckpts" / "mmlu_pro_subject", folder)
    manifest = json.loads((folder / "router.json").read_text())
    manifest["data"] = "hand-edited"
    (folder / "router.json").write_text(json.dumps(manifest))
    assert cli.main(["inspect", str(folder)]) == 0
    assert "router   mmlu_pro_subject" in capsys.readouterr().out


@pytest.mark.parametrize("change, words", [
    (lambda split: {**split, "test": split["test"] + split["test"][:3]}, "lists 3 documents more than once"),
    (lambda split: {**split, "fitted_on": "train"}, "'fitted_on' is 'train'"),
    (lambda split: {**split, "fitted_on": ["test"]}, "'fitted_on' is ['test']"),
    (lambda split: {**split, "test": [5]}, "must be a list of task/doc_id strings"),
])
def test_a_split_file_that_would_count_wrongly_is_refused(tmp_path: Path, capsys, change, words: str) -> None:
    split = json.loads((REPO / "router_ckpts" / "mmlu_pro_subject" / "split.json").read_text())
    (tmp_path / "split.json").write_text(json.dumps(change(split)))
    line = one_error_line(capsys, ["evaluate", "--router", str(REPO / "router_ckpts" / "mmlu_pro_subject"),
                                   "--records", str(REPO.parent / "shared" / "data" / "mmlu_pro"),
                                   "--split", str(tmp_path / "split.json"), "--output", str(tmp_path / "out")])
    assert words in line, line


@pytest.mark.parametrize("extra, words", [
    (["--seed", "-1"], "-1 is not a whole number >= 0"),
    (["--C", "0"], "0 is not a finite number > 0"),
    (["--C", "nan"], "nan is not a finite number > 0"),
    (["--guard-z", "inf"], "inf is not a finite number >= 0"),
    (["--output", "a_file"], "--output a_file is a file"),
    (["--router", "subject", "--margin", "0"], "--margin set the query router's"),
    (["--router", "table", "--C", "1"], "the table router has none"),
])
def test_train_arguments_out_of_range_are_one_line_before_any_data_is_read(records: Path, tmp_path: Path, capsys,
                                                                           monkeypatch, extra: list[str],
                                                                           words: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    argv = ["train", "--records", str(records), "--router", "query", *extra]
    line = one_error_line(capsys, argv if "--output" in extra else [*argv, "--output", "out"])
    assert words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "records"], "nothing written"


def test_an_undecodable_costs_file_is_one_short_line(records: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "costs.json").write_bytes(bytes(range(128, 256)) * 4000)
    line = one_error_line(capsys, ["train", "--records", str(records), "--router", "table",
                                   "--costs", str(tmp_path / "costs.json"), "--output", str(tmp_path / "out")])
    assert "not a parameter-count file (UnicodeDecodeError" in line and len(line) < 600, len(line)


def test_documents_left_out_are_counted_once(tmp_path: Path, capsys) -> None:
    """One document logged by expert a alone is left out once, although two experts lack it."""
    for k, (expert, extra) in enumerate((("a", 1), ("b", 0), ("c", 0))):
        log = tmp_path / expert / "samples_toy_2026-01-01T00-00-00.jsonl"
        log.parent.mkdir()
        log.write_text("".join(json.dumps({"doc_id": i, "exact_match": float((i + k) % 3 == 0),
                                           "doc": {"question": f"q{i}", "subject": "s"}}) + "\n"
                               for i in range(30 + extra)))
    samples = [argument for e in "abc" for argument in ("--samples", f"{e}={tmp_path / e}")]
    assert cli.main(["train", *samples, "--router", "table", "--no-plots", "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "1 documents lack some expert's result" in out, out


@pytest.mark.parametrize("extra, words", [
    (["--no-cost-curve", "--costs", "missing.json"], "--costs shape the accuracy-cost curve"),
    (["--strong", "gemma-7b", "--weak", "gemma-7b"], "both name 'gemma-7b'"),
])
def test_evaluate_cost_options_that_cannot_apply_are_one_line(tmp_path: Path, capsys, monkeypatch, extra: list[str],
                                                              words: str) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, ["evaluate", "--router", str(REPO / "router_ckpts" / "mmlu_pro_query"), "--records",
                                   str(REPO.parent / "shared" / "data" / "mmlu_pro"), "--output", "out", *extra])
    assert words in line, line
    assert not list(tmp_path.iterdir()), "nothing written"
