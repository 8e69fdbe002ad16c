"""Routing edge cases, raised before any expert loads: a missing question field, a subject the
table lacks (fallback, one warning naming it), an image-free document with no expert for it; and
the record of two ranks' sessions, whose figures cover both."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import RoutingError
from benchcoe_plugins.core.session import CoESession
from benchcoe_plugins.routers.table import TableRouter


def never_built(spec):
    raise AssertionError(f"expert {spec.name} must not be loaded")


def make_config(tmp_path: Path, experts: dict, **extra) -> Path:
    TableRouter.from_table({"biology": "a", "law": "b"}, experts=["a", "b"]).save(tmp_path / "router")
    path = tmp_path / "coe.yaml"
    path.write_text(yaml.safe_dump({"router": "router", "fallback": "a", "experts": experts, "result_cache": False,
                                    **extra}))
    return path


TEXT_EXPERTS = {"a": {"model": "hf"}, "b": {"model": "hf"}}


def test_missing_configured_question_field_is_an_error_before_loading(tmp_path) -> None:
    from lm_eval.api.instance import Instance

    from benchcoe_plugins.adapters.lm_eval.coe_lm import CoELM

    coe = CoELM(config=str(make_config(tmp_path, TEXT_EXPERTS, question_field={"toy*": "question"})))
    request = Instance("generate_until", {"subject": "law", "prompt": "x"}, ("Q: x", {"until": ["\n"]}), 0,
                       metadata=("toy_gen", 3, 1))
    with pytest.raises(RoutingError, match=r"document 3 of task 'toy_gen' has none of the question fields \['question'\]"):
        coe.generate_until([request])
    assert not coe.session.pool.loads


def test_unconfigured_task_falls_back_to_the_request_context(tmp_path) -> None:
    from lm_eval.api.instance import Instance

    from benchcoe_plugins.adapters.lm_eval.coe_lm import CoELM

    coe = CoELM(config=str(make_config(tmp_path, TEXT_EXPERTS)))
    request = Instance("generate_until", {"subject": "law"}, ("Q: the context", {}), 0, metadata=("other", 0, 1))
    assert coe._document(request).text == "Q: the context"


def test_unknown_subject_goes_to_fallback_with_one_warning(tmp_path, caplog) -> None:
    config = load_config(make_config(tmp_path, TEXT_EXPERTS))
    session = CoESession(config, never_built)
    documents = [RoutingDocument("toy", i, "q", {"subject": s}) for i, s in enumerate(["history", "law", "history"])]
    with caplog.at_level(logging.WARNING, logger="benchcoe_plugins"):
        assert session.route(documents) == ["a", "b", "a"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'history'" in warnings[0] and "fallback" in warnings[0]
    assert session.routes[("toy", "0")].reason == "fallback: unknown subject history"


def test_image_free_document_never_reaches_an_image_only_expert(tmp_path) -> None:
    experts = {"a": {"model": "llava_hf", "modality": "vision"}, "b": {"model": "hf", "modality": "text"}}
    session = CoESession(load_config(make_config(tmp_path, experts)), never_built)
    documents = [RoutingDocument("sqa", 0, "q", {"subject": "biology"}, has_image=False),
                 RoutingDocument("sqa", 1, "q", {"subject": "biology"}, has_image=True)]
    assert session.route(documents) == ["b", "a"]


def test_image_free_document_without_any_text_expert_is_a_clear_error(tmp_path) -> None:
    experts = {"a": {"model": "llava_hf", "modality": "vision"}, "b": {"model": "qwen2_5_vl", "modality": "vision"}}
    session = CoESession(load_config(make_config(tmp_path, experts)), never_built)
    with pytest.raises(RoutingError, match="no expert can answer image-free documents"):
        session.route([RoutingDocument("sqa", 0, "q", {"subject": "law"}, has_image=False)])


def answer_share(config: Path, rank: int, subjects: list[str]) -> CoESession:
    """A rank's session answering every second document of ``subjects`` (its share, as the harnesses deal
    them) with stand-in experts that return their name; a stand-in has a tokenizer-free whitespace count."""
    session = CoESession(load_config(config), lambda spec: spec.name, rank=rank, world_size=2)
    share = [{"i": i, "subject": s} for i, s in enumerate(subjects) if i % 2 == rank]
    session.answer("generate_until", share, None, lambda r: RoutingDocument("toy", r["i"], "q", r),
                   lambda expert, kind, r: r, lambda kind, r: str(r["i"]),
                   lambda model, kind, batch: [f"{model} answers" for _ in batch])
    return session


def test_two_ranks_record_covers_both_ranks(tmp_path, monkeypatch) -> None:
    """Rank 0 writes the record: every per-process figure in it must be summed over the ranks."""
    monkeypatch.setenv("BENCHCOE_RECORD_MEMORY", "1")
    config = make_config(tmp_path, TEXT_EXPERTS, result_cache=str(tmp_path / "store"))
    subjects = ["biology", "law", "law", "law"]  # rank 0: biology (a), law (b); rank 1: law, law (b)
    first_run = [answer_share(config, rank, subjects) for rank in (0, 1)]
    rerun = [answer_share(config, rank, subjects) for rank in (0, 1)]  # every answer from the result cache

    def record(sessions: list[CoESession]) -> dict:
        parts = [{"rows": s.log_rows(), "figures": s.rank_figures()} for s in sessions]
        return sessions[0].summary(sessions[0].gather_ranks(lambda mine: [mine, *parts[1:]]))

    first, again = record(first_run), record(rerun)
    assert first["expert_loads"] == {"a": 1, "b": 2} and first["expert_loads_per_rank"] == [{"a": 1, "b": 1}, {"b": 1}]
    assert {name: row["requests"] for name, row in first["spend"].items()} == {"a": 1, "b": 3}
    assert {name: row["generated_tokens"] for name, row in first["spend"].items()} == {"a": 2, "b": 6}
    assert first["spend"]["b"]["process"] == "harness"
    assert first["router_seconds"] == sum(s.router_seconds for s in first_run)
    # each rank: a baseline before its first load, then one per freed expert (the last one stays loaded)
    assert [(snapshot["rank"], snapshot["event"]) for snapshot in first["memory"]] == \
        [(0, "baseline"), (0, "freed"), (1, "baseline")]
    assert again["answers_from_result_cache"] == {"a": 1, "b": 3}
    assert again["expert_loads"] == {} and {row["requests"] for row in again["spend"].values()} == {0}
    assert first["documents_per_expert"] == again["documents_per_expert"] == {"toy": {"a": 1, "b": 3}}


def test_a_task_the_router_was_not_trained_on_is_routed_with_one_warning(tmp_path, caplog) -> None:
    """A router trained from lm-eval logs of some tasks, used on another task (or another harness): it
    still routes by the text (transfer is a use), but says so once per task."""
    import json

    make_config(tmp_path, TEXT_EXPERTS)
    manifest = json.loads((tmp_path / "router" / "router.json").read_text())
    manifest["data"] = {"tasks": ["toy_a", "toy_b"]}
    (tmp_path / "router" / "router.json").write_text(json.dumps(manifest))
    session = CoESession(load_config(tmp_path / "coe.yaml"), never_built)
    documents = [RoutingDocument(task, i, "q", {"subject": "law"}) for i, task in enumerate(["toy_a", "mmstar", "mmstar"])]
    with caplog.at_level(logging.WARNING, logger="benchcoe_plugins"):
        assert session.route(documents) == ["b", "b", "b"]
        session.route([RoutingDocument("mmstar", 9, "q", {"subject": "law"})])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "task mmstar is not among them" in warnings[0] and "toy_a, toy_b" in warnings[0]
    import contextlib
    import io

    from benchcoe_plugins import cli

    printed = io.StringIO()  # inspect names the tasks, so a user can see them beforehand
    with contextlib.redirect_stdout(printed):
        assert cli.main(["inspect", str(tmp_path / "router")]) == 0
    assert "tasks    2: toy_a, toy_b" in printed.getvalue()
