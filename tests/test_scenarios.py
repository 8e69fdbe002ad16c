"""Scenarios of benchcoe train / evaluate (field split, transfer, in-sample), the paired
router-vs-best-single intervals, the guard's console note and the plots' fixed colours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_training_pipeline import EXPERTS, slice_dir  # noqa: F401  (real 400-question MMLU-Pro slice)

from conftest import REPO, SHARED_DATA
from benchcoe_plugins.cli import main
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.training.metrics import accuracy_of, paired_difference
from benchcoe_plugins.training.plots import ROLE_COLORS, series_colors
from benchcoe_plugins.training.records import load_mmlu_pro


def category(key: str, data) -> str:
    return {f"{d.task}/{d.doc_id}": d.doc["category"] for d in data.documents}[key]


def test_field_split_trains_on_matching_documents_and_reports_paired_interval(slice_dir, tmp_path, capsys):
    out = tmp_path / "field"
    assert main(["train", "--records", str(slice_dir), "--experts", *EXPERTS, "--router", "table",
                 "--train-where", "category=math,la*", "--output", str(out), "--no-plots", "--quiet"]) == 0
    data = load_mmlu_pro(slice_dir, EXPERTS)
    split = json.loads((out / "split.json").read_text())
    assert {category(k, data) for k in split["train"] + split["validation"]} == {"math", "law"}
    assert {category(k, data) for k in split["test"]} == {"biology", "psychology"} and len(split["test"]) == 200
    assert split["scenario"]["name"] == "field"
    evaluation = json.loads((out / "report" / "evaluation.json").read_text())
    # the paired difference is recomputed here from the router's own routes on the test documents
    test = data.subset([i for i, d in enumerate(data.documents) if d.doc["category"] in ("biology", "psychology")])
    router = Router.load(out)
    hits = accuracy_of(test.correct, test.experts, router.predict(test.documents),
                       fallback=evaluation["baselines"]["best_single"]["expert"])
    best = test.correct[:, EXPERTS.index(evaluation["baselines"]["best_single"]["expert"])]
    difference = evaluation["router_minus_best_single"]
    assert difference["difference"] == pytest.approx(hits.mean() - best.mean(), abs=1e-6)
    low, high = difference["ci95"]
    assert low <= difference["difference"] <= high
    assert set(evaluation["per_subject"]) == {"biology", "psychology"}
    assert all("ci95" in row["router_minus_best_single"] for row in evaluation["per_subject"].values())
    markdown = (out / "report" / "evaluation.md").read_text()
    assert "Scenario: field" in markdown and "95 % [" in markdown
    assert "router - best single" in capsys.readouterr().out


def test_transfer_to_another_record_set_and_evaluate_agree(slice_dir, tmp_path, capsys):
    out = tmp_path / "transfer"
    args = ["--records", str(slice_dir), "--experts", *EXPERTS]
    assert main(["train", *args, "--router", "table", "--train-where", "category=math,law",
                 "--test-source", f"records={slice_dir}", "--test-where", "category=biology",
                 "--output", str(out), "--no-plots", "--quiet"]) == 0
    trained = json.loads((out / "report" / "evaluation.json").read_text())
    assert trained["documents"] == 100 and trained["scenario"]["name"] == "transfer"
    assert len(json.loads((out / "split.json").read_text())["test"]) == 100
    capsys.readouterr()
    assert main(["evaluate", "--router", str(out), *args, "--test-source", f"records={slice_dir}",
                 "--test-where", "category=biology", "--output", str(tmp_path / "ev"), "--no-plots"]) == 0
    evaluated = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert evaluated["accuracy"] == trained["accuracy"] and evaluated["documents"] == 100
    assert evaluated["router_minus_best_single"] == trained["router_minus_best_single"]
    assert "(transfer)" in capsys.readouterr().out


def test_in_sample_is_behind_a_flag_and_labelled(slice_dir, tmp_path, capsys):
    out = tmp_path / "naive"
    assert main(["train", "--records", str(slice_dir), "--experts", *EXPERTS, "--router", "table", "--in-sample",
                 "--output", str(out), "--no-plots", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "IN-SAMPLE accuracy" in printed
    held_out = json.loads((out / "report" / "evaluation.json").read_text())
    in_sample = json.loads((out / "report" / "in_sample" / "evaluation.json").read_text())
    assert not held_out["scenario"]["in_sample"] and in_sample["scenario"]["in_sample"]
    split = json.loads((out / "split.json").read_text())
    assert in_sample["documents"] == len(split["train"]) + len(split["validation"]) * ("validation" in split["fitted_on"])
    assert "IN-SAMPLE" in (out / "report" / "in_sample" / "evaluation.md").read_text()
    assert "IN-SAMPLE" not in (out / "report" / "evaluation.md").read_text()
    assert main(["evaluate", "--router", str(out), "--records", str(slice_dir), "--experts", *EXPERTS,
                 "--subset", "in-sample", "--output", str(tmp_path / "ev"), "--no-plots"]) == 0
    assert "IN-SAMPLE accuracy" in capsys.readouterr().out


def test_guard_says_in_plain_words_why_everything_went_to_the_best_single(slice_dir, tmp_path, capsys):
    out = tmp_path / "guarded"
    assert main(["train", "--records", str(slice_dir), "--experts", *EXPERTS, "--router", "subject",
                 "--guard-z", "1000", "--output", str(out), "--no-plots", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "The guard sent every question to the best single expert" in printed
    assert "standard error" in printed and "--no-guard" in printed
    assert "Guard: The guard sent" in (out / "report" / "evaluation.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--train-where", "category"], "expected FIELD=PATTERN"),
    (["--train-where", "nofield=x"], "no document of"),
    (["--train-where", "category=astrology"], "no document matches"),
    (["--train-where", "category=math", "--test-where", "category=m*"], "overlap"),
    (["--test-source", "parquet=/nowhere"], "expected KIND=PATH"),
    (["--test-where", "category=math"], "needs --train-where or --test-source"),
])
def test_bad_scenario_options_fail_with_one_line(slice_dir, tmp_path, capsys, argv, message):
    assert main(["train", "--records", str(slice_dir), "--experts", *EXPERTS, "--router", "table",
                 "--output", str(tmp_path / "x"), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "Traceback" not in error and len(error.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_paired_difference_matches_closed_forms():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 4000).astype(float), rng.integers(0, 2, 4000).astype(float)
    result = paired_difference(a, b)
    d = a - b
    assert result["difference"] == pytest.approx(d.mean(), abs=1e-6)
    assert result["standard_error"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), abs=1e-6)
    low, high = result["ci95"]  # the bootstrap interval is close to the normal one at n = 4000
    assert low == pytest.approx(d.mean() - 1.96 * result["standard_error"], abs=0.004)
    assert high == pytest.approx(d.mean() + 1.96 * result["standard_error"], abs=0.004)
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]


def test_router_best_single_and_oracle_keep_their_colours_in_every_plot():
    first = series_colors(["llama", "phi3", "router (x)", "best single (llama)", "oracle"])
    second = series_colors(["a", "b", "c", "d", "e", "f", "CoE query", "oracle"])
    assert first[2] == second[6] == ROLE_COLORS["router"] and first[4] == second[7] == ROLE_COLORS["oracle"]
    assert first[3] == ROLE_COLORS["best single"]
    experts = first[:2] + second[:6]
    assert not set(experts) & set(ROLE_COLORS.values())
    assert len(set(second[:6])) == 6
    # several routers in one plot: each its own shade of the router red, never an expert's colour
    routers = series_colors(["CoE subject", "CoE query", "llama", "subject-level (shrunk)", "best single (llama)"])
    assert routers[0] == ROLE_COLORS["router"] and len({routers[0], routers[1], routers[3]}) == 3
    assert routers[4] == ROLE_COLORS["best single"] and routers[2] not in (routers[0], routers[1], routers[3])


SHIPPED_EXPERTS = ["Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct", "mathstral-7B", "gemma-7b", "Qwen1.5-7B-Chat"]


def test_evaluate_labels_the_split_by_its_own_seed_and_a_seedless_split_by_its_file(tmp_path, capsys):
    """router_ckpts/mmlu_pro_subject's split.json was written before splits recorded their scenario: its
    seed says what it is. A split file without a seed gets no seed label."""
    router = REPO / "router_ckpts" / "mmlu_pro_subject"
    split = json.loads((router / "split.json").read_text())
    assert "scenario" not in split and split["seed"] == 0
    seedless = tmp_path / "seedless.json"
    seedless.write_text(json.dumps({k: v for k, v in split.items() if k != "seed"}))
    args = ["evaluate", "--router", str(router), "--records", str(SHARED_DATA / "mmlu_pro"), "--experts",
            *SHIPPED_EXPERTS, "--limit", "300", "--no-plots", "--no-cost-curve"]
    for split_args, output, description in (([], "own", "random split by seed 0"),
                                            (["--split", str(seedless)], "seedless", f"the split of {seedless}")):
        assert main([*args, *split_args, "--output", str(tmp_path / output)]) == 0
        assert json.loads((tmp_path / output / "evaluation.json").read_text())["scenario"]["description"] == description
        assert "seed None" not in (tmp_path / output / "evaluation.md").read_text()


def test_train_on_a_split_file_names_the_file_not_a_seed(slice_dir, tmp_path, capsys):
    first = tmp_path / "first"
    common = ["train", "--records", str(slice_dir), "--experts", *EXPERTS, "--router", "table", "--no-plots", "--quiet"]
    assert main([*common, "--output", str(first)]) == 0
    capsys.readouterr()
    assert main([*common, "--split", str(first / "split.json"), "--output", str(tmp_path / "second")]) == 0
    (parts,) = [line for line in capsys.readouterr().out.splitlines() if " / test " in line]
    assert "seed" not in parts and f"the split of {first / 'split.json'}" in parts
