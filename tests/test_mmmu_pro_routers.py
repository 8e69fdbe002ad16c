"""Routers for VLM pools from the real MMMU-Pro records (../shared/data/mmmu_pro): train /
evaluate / reload through the ``benchcoe`` CLI on a real slice, and the bad inputs (records
without a subject field, questions without text, a subject field the router does not know)."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA, run_cli

from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import ConfigError, RecordsError
from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.core.session import CoESession
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.routers.subject import SubjectRouter
from benchcoe_plugins.training.dataset import read_split, split_from_keys
from benchcoe_plugins.training.records import (
    MMMU_PRO_TASK,
    load_mmmu_pro,
    load_question_records,
)

MMMU_PRO = SHARED_DATA / "mmmu_pro"
EXPERTS = ["InternVL2-Llama3-76B", "llava-onevision-qwen2-72b-vo-hf", "InternVL2-8B"]
SLICE = 600


def write_records(root: Path, questions: list[dict], experts: list[str]) -> Path:
    """A records folder: these questions and the real records of ``experts`` on them."""
    root.mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "questions.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(q) + "\n" for q in questions)
    (root / "records").mkdir(exist_ok=True)
    ids = {q.get("id") for q in questions}
    for expert in experts:
        with gzip.open(root / "records" / f"{expert}.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in read_jsonl(MMMU_PRO / "records" / f"{expert}.jsonl.gz")
                              if r["id"] in ids)
    return root


def real_questions(n: int) -> list[dict]:
    rows = []
    for row in read_jsonl(MMMU_PRO / "questions.jsonl.gz"):
        rows.append(row)
        if len(rows) == n:
            break
    return rows


def decisions(router: Router, documents: list[RoutingDocument]) -> list[tuple]:
    return [(d.expert, d.subject, d.reason, None if d.score is None else round(d.score, 6))
            for d in router.decide(documents)]


def test_reader_keeps_the_records_format_and_their_accuracy() -> None:
    data = load_question_records(MMMU_PRO)
    assert len(data) == 1730 and len(set(data.subjects)) == 30
    assert {d.task for d in data.documents} == {MMMU_PRO_TASK}
    assert data.documents[0].doc_id == data.documents[0].doc["id"]
    # the data README's accuracy over the 1,730 questions
    accuracy = dict(zip(data.experts, data.correct.mean(axis=0).round(3)))
    assert accuracy["llava-onevision-qwen2-72b-vo-hf"] == 0.382 and accuracy["InternVL2-8B"] == 0.324


@pytest.mark.parametrize("kind", ["subject", "query"])
def test_train_evaluate_reload_on_a_real_slice(tmp_path, kind) -> None:
    out = tmp_path / kind
    common = ["--records", str(MMMU_PRO), "--experts", *EXPERTS, "--limit", str(SLICE)]
    shrinkage = ["--subject-prior", "cv"] if kind == "subject" else []  # the shipped subject recipe
    run_cli(["benchcoe", "train", *common, "--router", kind, "--seed", "1", "--text", "question+options",
             "--no-guard", "--no-plots", "--quiet", "--output", str(out),
             "--refit", *shrinkage], cwd=tmp_path)
    manifest = json.loads((out / "router.json").read_text())
    if kind == "subject":
        assert manifest["params"]["subject_prior"] == "cv" and "chosen" in manifest["subject_prior_cv"]
    trained = manifest["evaluation"]["accuracy"]
    evaluated = run_cli(["benchcoe", "evaluate", "--router", str(out), *common, "--output", str(tmp_path / "eval"),
                         "--no-plots"], cwd=tmp_path)
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["accuracy"] == trained, evaluated.stdout
    assert report["documents"] == round(SLICE * 0.3)

    data = load_mmmu_pro(MMMU_PRO, EXPERTS, limit=SLICE)
    test = data.subset(split_from_keys(data, read_split(out / "split.json"))["test"])
    loaded = Router.load(out)
    assert loaded.kind == kind and loaded.experts_ == EXPERTS
    # the reloaded router's choices score exactly what the fitted one scored before it was saved
    chosen = [d.expert for d in loaded.decide(test.documents)]
    column = {e: i for i, e in enumerate(EXPERTS)}
    hits = test.correct[np.arange(len(test)), [column[e] for e in chosen]]
    assert round(float(hits.mean()), 6) == trained
    if kind == "subject":
        assert set(manifest["subjects"]) <= set(data.subjects) and len(manifest["subjects"]) > 5
        assert len({d.subject for d in loaded.decide(test.documents)}) > 1


def test_bad_subject_prior_is_one_clear_line(tmp_path) -> None:
    result = run_cli(["benchcoe", "train", "--records", str(MMMU_PRO), "--router", "subject", "--subject-prior", "-2",
                      "--output", str(tmp_path / "r")], cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--subject-prior: '-2' is not a number >= 0 or 'cv'" in result.stderr
    assert not (tmp_path / "r").exists()


def test_reload_decides_exactly_as_the_fitted_router(tmp_path) -> None:
    data = load_mmmu_pro(MMMU_PRO, EXPERTS, limit=SLICE)
    router = SubjectRouter(text="question+options", guard_z=None, progress=False)
    router.fit(data.documents[:400], data.correct[:400], data.experts, subjects=data.subjects[:400])
    router.save(tmp_path / "r")
    held_out = data.documents[400:]
    assert decisions(router, held_out) == decisions(Router.load(tmp_path / "r"), held_out)


def test_records_without_a_subject_field_are_one_clear_error(tmp_path) -> None:
    questions = real_questions(40)
    del questions[7]["subject"]
    folder = write_records(tmp_path / "records", questions, EXPERTS[:2])
    with pytest.raises(RecordsError, match=r"question 8: no 'subject' field"):
        load_question_records(folder)
    result = run_cli(["benchcoe", "train", "--records", str(folder), "--router", "subject", "--output",
                      str(tmp_path / "out")], cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no 'subject' field" in result.stderr and not (tmp_path / "out").exists()


def test_image_only_questions_cannot_train_a_text_router(tmp_path) -> None:
    questions = [{**q, "question": ""} for q in real_questions(60)]  # as in mmmu_pro_vision: the question is in the image
    folder = write_records(tmp_path / "records", questions, EXPERTS[:2])
    result = run_cli(["benchcoe", "train", "--records", str(folder), "--router", "subject", "--output",
                      str(tmp_path / "out")], cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "carry no question text" in result.stderr


@pytest.fixture(scope="module")
def mmmu_pro_router(tmp_path_factory) -> Path:
    """An unguarded subject router over the 30 subjects of all 1,730 questions, two experts."""
    data = load_mmmu_pro(MMMU_PRO, EXPERTS[:2])
    folder = tmp_path_factory.mktemp("mmmu_pro_router") / "router"
    SubjectRouter(text="question+options", guard_z=None, progress=False).fit(
        data.documents, data.correct, data.experts, subjects=data.subjects).save(folder)
    return folder


def session_for(tmp_path: Path, router: Path, **extra) -> CoESession:
    experts = {e: {"model": "hf"} for e in EXPERTS[:2]}
    path = tmp_path / "coe.yaml"
    path.write_text(yaml.safe_dump({"router": str(router), "fallback": EXPERTS[1], "experts": experts,
                                    "result_cache": False, **extra}))

    def never_built(spec):
        raise AssertionError(f"expert {spec.name} must not be loaded")

    return CoESession(load_config(path), never_built)


def test_documents_without_text_go_to_the_fallback_with_one_warning(tmp_path, mmmu_pro_router, caplog) -> None:
    session = session_for(tmp_path, mmmu_pro_router)
    documents = [RoutingDocument("mmmu_pro_vision", i, "", {"id": f"test_Art_{i}", "options": "['a', 'b']"})
                 for i in range(3)]
    documents.append(RoutingDocument("mmmu_pro_vision", 3, "Which enzyme digests starch in the mouth?", {}))
    with caplog.at_level(logging.WARNING, logger="benchcoe_plugins"):
        chosen = session.route(documents)
    assert chosen[:3] == [EXPERTS[1]] * 3
    assert [session.routes[("mmmu_pro_vision", str(i))].reason for i in range(3)] == \
        ["fallback: no question text to read"] * 3
    assert session.routes[("mmmu_pro_vision", "3")].decision.reason == "predicted subject"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no question text" in warnings[0] and EXPERTS[1] in warnings[0]


def test_unknown_subject_field_falls_back_to_the_predicted_subject(tmp_path, mmmu_pro_router, caplog) -> None:
    session = session_for(tmp_path, mmmu_pro_router, subject_source={"mmmu*": "field", "mmstar": "field"})
    router = session.router
    assert len(router.subjects_) == 30
    text = "Which enzyme in saliva starts the digestion of starch?"
    documents = [RoutingDocument("mmmu_val", 0, "What does the painting show?", {"id": "validation_Art_1"}),
                 RoutingDocument("mmstar", 1, text, {"category": "coarse perception"}),
                 RoutingDocument("mmstar", 2, text, {"category": "coarse perception"}),
                 RoutingDocument("scienceqa", 3, text, {"subject": "natural science"})]
    with caplog.at_level(logging.WARNING, logger="benchcoe_plugins"):
        session.route(documents)
    routed = {d.doc_id: session.routes[d.key].decision for d in documents}
    assert (routed[0].subject, routed[0].reason, routed[0].expert) == ("art", "subject field", router.table_["art"])
    predicted = router.decide([documents[3]])[0]  # scienceqa is not configured: predicted subject
    assert routed[3] == predicted and predicted.reason == "predicted subject"
    assert routed[1] == routed[2] == predicted  # unknown field 'coarse perception': the text's predicted subject
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'coarse perception'" in warnings[0] and "30 subjects" in warnings[0]


def test_subject_source_needs_a_router_that_reads_subjects(tmp_path) -> None:
    from benchcoe_plugins.routers.table import TableRouter

    TableRouter.from_table({"art": "a"}, experts=["a", "b"]).save(tmp_path / "table")
    path = tmp_path / "coe.yaml"
    config = {"router": "table", "experts": {"a": {"model": "hf"}, "b": {"model": "hf"}}, "result_cache": False}
    path.write_text(yaml.safe_dump({**config, "subject_source": {"mmstar": "predicted"}}))
    with pytest.raises(ConfigError, match=r"'predicted' needs a subject router"):
        load_config(path)
    path.write_text(yaml.safe_dump({**config, "subject_source": {"mmstar": "guess"}}))
    with pytest.raises(ConfigError, match=r"subject_source must map task patterns to one of \('field', 'predicted'\)"):
        load_config(path)
    path.write_text(yaml.safe_dump({**config, "subject_source": {"mmmu*": "field"}}))
    assert load_config(path).subject_source_for("mmmu_val") == "field"
    assert load_config(path).subject_source_for("mmstar") == "predicted"


def test_options_written_as_a_string_are_read_like_a_list() -> None:
    from benchcoe_plugins.routers.subject import document_texts

    as_list = RoutingDocument("t", 0, "Q", {"options": ["red wine", "blue sky"]})
    as_string = RoutingDocument("t", 1, "Q", {"options": "['red wine', 'blue sky']"})
    broken = RoutingDocument("t", 2, "Q", {"options": "['red wine', "})
    texts = document_texts([as_list, as_string, broken], "question+options")
    assert texts[0] == texts[1] == "Q\nred wine\nblue sky" and texts[2] == "Q"
