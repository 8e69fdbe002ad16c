"""A cascade whose ordered pair is chosen among a pool (``--choose-pair``): on synthetic documents whose
best pair is known, and through ``benchcoe train`` / ``evaluate`` on the real MMMU-Pro records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchcoe_plugins.cli import main
from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.routers.cascade import CascadeRouter
from benchcoe_plugins.training.evaluate_cli import compared_experts
from conftest import SHARED_DATA

LETTER_PATTERN = r"^\s*\(?([A-J])\b"
POOL = ["noisy", "sure", "steady"]


def synthetic_pool(n: int, seed: int, signal: bool = True):
    """Three experts answering bare letters. With ``signal``: "sure" is wrong whenever it answers A (its
    fallback) and right on 90 % of the rest; "steady" is right on 60 % at random; "noisy" on 25 %. Only the
    cascade sure -> steady can see where "sure" fails. Without: every expert is right at random."""
    rng = np.random.default_rng(seed)
    documents, correct = [], []
    outputs: dict[str, list[str]] = {e: [] for e in POOL}
    for i in range(n):
        documents.append(RoutingDocument("synthetic", i, f"question {i} word{rng.integers(500)}", {"subject": "one"}))
        letters = {e: "ABCDEFGHIJ"[rng.integers(10)] for e in POOL}
        for e in POOL:
            outputs[e].append(letters[e])
        if signal:
            correct.append([rng.random() < 0.25, letters["sure"] != "A" and rng.random() < 0.9, rng.random() < 0.6])
        else:
            correct.append([rng.random() < 0.4, rng.random() < 0.55, rng.random() < 0.5])
    return documents, outputs, np.array(correct, dtype=float)


def test_the_pair_that_can_see_the_first_experts_failures_is_chosen_and_kept_after_reload(tmp_path: Path,
                                                                                          capsys) -> None:
    documents, outputs, correct = synthetic_pool(900, 0)
    router = CascadeRouter(answer_pattern=LETTER_PATTERN, answer_letters=True, seed=0, progress=True).fit(
        documents, correct, POOL, outputs)
    assert "cascade pairs, by first expert: 100%" in capsys.readouterr().err, "choosing shows its progress"
    assert (router.first, router.second) == ("sure", "steady") and router.mode_ == "cascade"
    assert router.pool_ == POOL and compared_experts(router) == POOL
    choice = router.metadata_["pair_choice"]
    assert choice["chosen"] == "sure -> steady" and len(choice["pair_accuracy"]) == 6, "every ordered pair scored"
    assert router.metadata_["guard"]["routes"] and "among 24 candidates" in router.metadata_["guard"]["method"]
    test_documents, test_outputs, _ = synthetic_pool(300, 1)
    escalate, _ = router.escalate(test_documents, test_outputs["sure"])
    assert escalate.tolist() == [o == "A" for o in test_outputs["sure"]]
    reloaded = Router.load(router.save(tmp_path / "router"))
    assert reloaded.pool_ == POOL and reloaded.experts_ == ["sure", "steady"]
    # the pair's calibration scores are a column selection of the pool's: saved in order, not transposed
    np.testing.assert_array_equal(reloaded.calibration_scores(), router.calibration_scores())
    assert reloaded.escalate(test_documents, test_outputs["sure"])[0].tolist() == escalate.tolist()


def test_without_signal_the_guard_sends_everything_to_the_pools_best_single(tmp_path: Path) -> None:
    """Every expert is right at random: the guard (the choice among all pairs cross-fitted) falls back to the
    pool's best single expert, which the saved pair contains so the harness can run it."""
    documents, outputs, correct = synthetic_pool(900, 2, signal=False)
    best = POOL[int(np.argmax(correct.mean(axis=0)))]
    router = CascadeRouter(answer_pattern=LETTER_PATTERN, answer_letters=True, seed=0).fit(
        documents, correct, POOL, outputs)
    assert router.mode_ == "best" and router.best_expert_ == best and best in router.experts_
    reloaded = Router.load(router.save(tmp_path / "router"))
    for model in (router, reloaded):
        assert {d.expert for d in model.decide(documents[:40])} == {best}
        escalate, _ = model.escalate(documents[:40], outputs[model.first][:40])
        assert escalate.tolist() == [best == model.second] * 40


def test_a_pool_without_answer_texts_for_an_expert_is_refused() -> None:
    from benchcoe_plugins.core.errors import RecordsError

    documents, outputs, correct = synthetic_pool(60, 3)
    with pytest.raises(RecordsError, match=r"none given for \['steady'\]"):
        CascadeRouter(answer_pattern=LETTER_PATTERN).fit(documents, correct, POOL,
                                                         {e: o for e, o in outputs.items() if e != "steady"})
    with pytest.raises(RecordsError, match="'noisy' hold no answer text"):
        CascadeRouter(answer_pattern=LETTER_PATTERN).fit(documents, correct, POOL, {**outputs, "noisy": [""] * 60})


@pytest.mark.skipif(not (SHARED_DATA / "mmmu_pro").is_dir(), reason="needs ../shared/data")
def test_choose_pair_through_the_cli_compares_with_the_pools_best_single(tmp_path: Path, capsys) -> None:
    """``benchcoe train --choose-pair`` on three real VLMs: the router runs two of them, its report's best
    single is the best of all three (chosen on the fit part), and ``benchcoe evaluate`` reproduces it."""
    pool = ["InternVL2-8B", "InternVL2-Llama3-76B", "llava-onevision-qwen2-72b-vo-hf"]
    out = tmp_path / "router"
    argv = ["train", "--records", str(SHARED_DATA / "mmmu_pro"), "--router", "cascade", "--choose-pair",
            "--experts", *pool, "--answer-pattern", LETTER_PATTERN, "--answer-letters", "--seed", "1",
            "--output", str(out), "--no-plots", "--quiet"]
    assert main(argv) == 0
    assert "cascade pairs, by first expert" not in capsys.readouterr().err, "--quiet: no progress bar"
    manifest = json.loads((out / "router.json").read_text())
    assert manifest["cascade"]["pool"] == pool and len(manifest["experts"]) == 2
    assert set(manifest["pair_choice"]["pair_accuracy"]) == {f"{a} -> {b}" for a in pool for b in pool if a != b}
    evaluation = manifest["evaluation"]
    assert set(evaluation["routing_distribution"]) == set(pool), "the routing table lists the whole pool"
    assert evaluation["baselines"]["best_single"]["expert"] == "llava-onevision-qwen2-72b-vo-hf"
    capsys.readouterr()
    assert main(["evaluate", "--router", str(out), "--records", str(SHARED_DATA / "mmmu_pro"),
                 "--output", str(tmp_path / "eval"), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {evaluation['accuracy']:.4f} on 519 documents" in printed
    assert "(llava-onevision-qwen2-72b-vo-hf)" in printed
    assert main(["inspect", str(out)]) == 0
    assert f"chosen by cross-validation among {', '.join(pool)}" in capsys.readouterr().out


def test_choose_pair_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    records = str(SHARED_DATA / "mmmu_pro")
    three = ["InternVL2-8B", "InternVL2-40B", "InternVL2-Llama3-76B"]
    for extra, message in (([], "add --choose-pair"),
                           (["--router", "query", "--choose-pair"], "--choose-pair shape what a cascade reads")):
        argv = ["train", "--records", records, "--router", "cascade", "--experts", *three, *extra,
                "--output", str(tmp_path / "router"), "--quiet", "--no-plots"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "router").exists()
