"""The cascade's option-letter features (``answer_letters``) and its guard, on synthetic documents
whose ground truth is known, and the shipped MMMU-Pro cascade on the real records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import RouterFormatError
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.routers.cascade import ANSWER_FEATURES, SHAPE_FEATURES, CascadeRouter, answer_features
from conftest import REPO, SHARED_DATA

LETTER_PATTERN = r"^\s*\(?([A-J])\b"


def synthetic(n: int, seed: int, first_right: callable, second_rate: float):
    """Documents with uninformative text; FIRST answers a bare letter; correctness by ``first_right(letter, rng)``."""
    rng = np.random.default_rng(seed)
    documents, outputs, correct = [], [], []
    for i in range(n):
        letter = "ABCDEFGHIJ"[rng.integers(10)]
        documents.append(RoutingDocument("synthetic", i, f"question {i} word{rng.integers(500)} word{rng.integers(500)}",
                                           {"subject": "one"}))
        outputs.append(letter)
        correct.append([first_right(letter, rng), rng.random() < second_rate])
    return documents, outputs, np.array(correct, dtype=float)


def test_answer_letter_columns_are_the_first_found_letter() -> None:
    features = answer_features(["B.", "(C) or D", "", "the answer is (E)", "a"], LETTER_PATTERN)
    letters = features[:, len(SHAPE_FEATURES):]
    assert letters.argmax(axis=1)[:2].tolist() == [1, 2] and letters[:2].sum(axis=1).tolist() == [1, 1]
    assert letters[2:].sum() == 0, "no letter found at the start: no letter column set"
    pattern_groups = answer_features(["x (F)"], r"^(x) \(([A-J])\)")  # several groups: the first non-empty one
    assert pattern_groups[0, len(SHAPE_FEATURES):].sum() == 0, "'x' is no option letter"
    assert answer_features(["B."], LETTER_PATTERN, SHAPE_FEATURES).shape == (1, len(SHAPE_FEATURES))


def test_the_first_experts_letter_decides_where_its_text_cannot() -> None:
    """FIRST is wrong whenever it answers A (its fallback when unsure) and right otherwise; SECOND is right
    half the time. Only the chosen letter tells them apart: with it, exactly the A answers escalate."""
    rule = lambda letter, rng: letter != "A"  # noqa: E731
    documents, outputs, correct = synthetic(600, 0, rule, 0.5)
    test_documents, test_outputs, _ = synthetic(300, 1, rule, 0.5)
    letters = CascadeRouter(answer_pattern=LETTER_PATTERN, answer_letters=True, guard_z=None, seed=0)
    escalate, _ = letters.fit(documents, correct, ["first", "second"], outputs).escalate(test_documents, test_outputs)
    assert escalate.tolist() == [o == "A" for o in test_outputs]
    shape_only = CascadeRouter(answer_pattern=LETTER_PATTERN, guard_z=None, seed=0)
    escalate, _ = shape_only.fit(documents, correct, ["first", "second"], outputs).escalate(test_documents, test_outputs)
    assert escalate.tolist() != [o == "A" for o in test_outputs], "without the letter the answers look alike"


@pytest.mark.parametrize("second_rate, best", [(0.75, "second"), (0.1, "first")])
def test_the_guard_sends_everything_to_the_better_expert_when_escalation_has_no_signal(
        tmp_path: Path, second_rate: float, best: str) -> None:
    """FIRST and SECOND are right at random (0.5 and ``second_rate``), independent of anything the cascade
    reads: no escalation rule beats the better expert alone, so the guard chooses it, and the saved router
    keeps that choice."""
    documents, outputs, correct = synthetic(800, 2, lambda letter, rng: rng.random() < 0.5, second_rate)
    router = CascadeRouter(answer_pattern=LETTER_PATTERN, answer_letters=True, seed=0).fit(
        documents, correct, ["first", "second"], outputs)
    assert router.mode_ == "best" and router.best_expert_ == best
    assert not router.metadata_["guard"]["routes"]
    reloaded = Router.load(router.save(tmp_path / "router"))
    for model in (router, reloaded):
        assert {d.expert for d in model.decide(documents[:50])} == {best}
        escalate, _ = model.escalate(documents[:50], outputs[:50])
        assert escalate.tolist() == [best == "second"] * 50, "evaluation counts the same expert the harness runs"
    from benchcoe_plugins.core.errors import ConfigError
    from benchcoe_plugins.routers.cost import cascade_gain_threshold

    for costs in ({"cost_weight": 0.01, "budget": None}, {"cost_weight": None, "budget": object()}):
        with pytest.raises(ConfigError, match="guard sends every document to .* would have no effect"):
            cascade_gain_threshold(reloaded, SimpleNamespace(**costs))  # checked before any cost is read
    unguarded = CascadeRouter(answer_pattern=LETTER_PATTERN, answer_letters=True, guard_z=None, seed=0).fit(
        documents, correct, ["first", "second"], outputs)
    assert unguarded.mode_ == "cascade" and {d.expert for d in unguarded.decide(documents[:50])} == {"first"}


def test_a_router_saved_without_letters_or_guard_loads_as_it_was_trained(tmp_path: Path) -> None:
    """The shipped MMLU-Pro cascade predates both: it reads the four shape features and escalates unguarded."""
    router = Router.load(REPO / "router_ckpts" / "mmlu_pro_cascade")
    assert router.answer_features_ == list(SHAPE_FEATURES) and router.mode_ == "cascade"
    folder = tmp_path / "router"
    shutil.copytree(REPO / "router_ckpts" / "mmlu_pro_cascade", folder)
    manifest = json.loads((folder / "router.json").read_text())
    manifest["cascade"]["answer_features"] = ["answered", "no_such_feature"]
    (folder / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(RouterFormatError, match="answer_features"):
        Router.load(folder)
    manifest["cascade"]["answer_features"] = list(SHAPE_FEATURES)
    manifest["cascade"]["mode"] = "sometimes"
    (folder / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(RouterFormatError, match="mode"):
        Router.load(folder)


@pytest.mark.skipif(not (SHARED_DATA / "mmmu_pro").is_dir(), reason="needs ../shared/data")
def test_the_shipped_mmmu_pro_cascade_decides_on_the_records_as_in_its_report() -> None:
    """Reloaded, ``router_ckpts/mmmu_pro_cascade`` reproduces its held-out accuracy from the real records
    (InternVL2-Llama3-76B's letters decide, llava-onevision-72b answers escalated questions)."""
    from benchcoe_plugins.training.dataset import read_split, split_from_keys
    from benchcoe_plugins.training.outputs import record_outputs
    from benchcoe_plugins.training.records import load_mmmu_pro

    folder = REPO / "router_ckpts" / "mmmu_pro_cascade"
    router = Router.load(folder)
    assert router.answer_features_ == list(ANSWER_FEATURES) and router.mode_ == "cascade"
    data = load_mmmu_pro(SHARED_DATA / "mmmu_pro", router.experts_)
    test = data.subset(split_from_keys(data, read_split(folder / "split.json"))["test"])
    escalate, _ = router.escalate(test.documents, record_outputs(SHARED_DATA / "mmmu_pro", router.first, test))
    accuracy = float(np.where(escalate, test.correct[:, 1], test.correct[:, 0]).mean())
    manifest = json.loads((folder / "router.json").read_text())
    assert accuracy == pytest.approx(manifest["evaluation"]["accuracy"], abs=1e-6)
    assert accuracy > test.correct.mean(axis=0).max(), "above the best single expert on its test part"


def test_inspect_says_what_each_shipped_cascade_reads(capsys) -> None:
    from benchcoe_plugins.cli import main

    lines = {}
    for name in ("mmmu_pro_cascade", "mmlu_pro_cascade"):
        assert main(["inspect", str(REPO / "router_ckpts" / name)]) == 0
        lines[name] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("cascade ", "reads "))]
    assert lines["mmmu_pro_cascade"] == [
        "cascade  InternVL2-Llama3-76B answers, then llava-onevision-qwen2-72b-vo-hf where it escalates",
        "reads    InternVL2-Llama3-76B's answer via '^\\s*\\(?([A-J])\\b': answered, distinct_answers, log_characters, "
        "distinct_line_share, the option letter it chose (A-J)"]
    assert lines["mmlu_pro_cascade"][1].endswith("log_characters, distinct_line_share"), "no letters: read as trained"
