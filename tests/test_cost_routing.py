"""Cost-aware routing on real MMLU-Pro records: budgets hold on held-out documents, cost weight 0 is
the accuracy router, missing costs fail at start-up, the spend record and the accuracy-cost curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchcoe_plugins.cli import main
from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.routers.cost import Budget, CostAwareRouter, budget_tolerance, calibrate_cost_weight, choose
from benchcoe_plugins.routers.query import QueryRouter
from benchcoe_plugins.training.dataset import parts_subset, read_split, split_from_keys, split_indices
from benchcoe_plugins.training.records import load_mmlu_pro
from conftest import SHARED_DATA, mmlu_pro_questions, read_results, run_cli, write_mmlu_pro_records
from coe_workspace import workspace_env

MMLU = SHARED_DATA / "mmlu_pro"
WEAK, STRONG = "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B"
COSTS = {WEAK: 8.0, STRONG: 70.6}
QUESTIONS = 1500


@pytest.fixture(scope="module")
def fitted() -> dict:
    """A query router on the first 1,500 real questions, two experts; 70/30 split by seed 0."""
    data = load_mmlu_pro(MMLU, [WEAK, STRONG], limit=QUESTIONS)
    indices = split_indices(len(data), seed=0, test_fraction=0.3, validation_fraction=0.1)
    train, validation = data.subset(indices["train"]), data.subset(indices["validation"])
    router = QueryRouter(tuning="cv", folds=3, progress=False, text="question+options", guard_z=None)
    router.fit(train.documents, train.correct, train.experts, subjects=train.subjects,
               validation=(validation.documents, validation.correct, validation.subjects))
    return {"router": router, "test": data.subset(indices["test"]), "fit": parts_subset(data, indices, ["train", "validation"])}


@pytest.mark.parametrize("budget", [Budget(share=0.2), Budget(share=0.5), Budget(share=0.8),
                                    Budget(mean_cost=30.0), Budget(mean_cost=50.0)])
def test_budget_holds_on_held_out_documents(fitted, budget: Budget) -> None:
    router, test = fitted["router"], fitted["test"]
    costs = np.array([COSTS[e] for e in router.experts_])
    calibration = router.calibration_scores()
    assert len(calibration) == len(fitted["fit"]), "out-of-fold scores of every training + validation document"
    routed = CostAwareRouter(router, COSTS, budget=budget)
    assert routed.calibration["measure"] <= (budget.share if budget.share is not None else budget.mean_cost)
    choices = np.array([router.experts_.index(e) for e in routed.predict(test.documents)])
    held_out = (choices == router.experts_.index(STRONG)).mean() if budget.share is not None else costs[choices].mean()
    target = budget.share if budget.share is not None else budget.mean_cost
    tolerance = budget_tolerance(calibration, costs, budget, router.experts_, routed.cost_weight_, len(test))
    scale = 1.0 if budget.share is not None else float(np.ptp(costs))  # the range the measure can move in
    assert tolerance < 0.1 * scale, "the stated tolerance is tight"
    assert held_out <= target + tolerance, (held_out, target, tolerance)
    assert held_out >= target - 0.15 * scale, "the budget is used, not undershot"


def test_cost_weight_zero_gives_the_accuracy_routers_decisions(fitted, tmp_path: Path) -> None:
    import copy

    router, test = copy.deepcopy(fitted["router"]), fitted["test"]  # the module's router stays as fitted
    router.margin_ = 0.02  # deferral on: cost weight 0 must keep it too
    reference = router.decide(test.documents)
    assert CostAwareRouter(router, COSTS, cost_weight=0.0).decide(test.documents) == reference
    router.save(tmp_path / "router")
    loaded = Router.load(tmp_path / "router")
    assert CostAwareRouter(loaded, COSTS, cost_weight=0).decide(test.documents) == loaded.decide(test.documents)
    assert loaded.predict(test.documents) == [d.expert for d in reference]
    np.testing.assert_allclose(loaded.calibration_scores(), router.calibration_scores())
    cheap = CostAwareRouter(loaded, COSTS, cost_weight=1.0).predict(test.documents)
    assert set(cheap) == {WEAK}, "a weight above the score range sends everything to the cheaper expert"


def test_calibration_is_the_smallest_weight_meeting_the_budget() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(400, 3))
    costs = np.array([1.0, 4.0, 9.0])
    budget = Budget(mean_cost=4.0)
    weight = calibrate_cost_weight(scores, costs, budget, ["a", "b", "c"])
    assert costs[choose(scores, costs, weight)].mean() <= 4.0
    assert costs[choose(scores, costs, weight * 0.99)].mean() > 4.0
    with pytest.raises(ConfigError, match="cannot be met"):
        calibrate_cost_weight(scores, costs, Budget(mean_cost=0.5), ["a", "b", "c"])


def test_missing_cost_is_a_clear_error_at_start_up(workspace, fitted) -> None:
    query = QueryRouter(blend=1.0, margin=0.0, guard_z=None, progress=False)  # a query router over alpha / beta
    data = fitted["fit"]
    query.fit(data.documents[:200], data.correct[:200], ["alpha", "beta"]).save(workspace / "query_router")
    config = yaml.safe_load((workspace / "coe.yaml").read_text())
    config["router"] = "query_router"
    config["experts"]["alpha"]["parameters"] = 0.1
    (workspace / "costly.yaml").write_text(yaml.safe_dump(config))
    result = run_cli(["lm_eval", "--model", "coe", "--model_args", "config=costly.yaml,cost_weight=0.01",
                      "--tasks", "toy_gen", "--include_path", str(workspace / "tasks")],
                     cwd=workspace, env=workspace_env(workspace), check=False)
    assert result.returncode != 0
    assert "no cost for expert(s) ['beta']" in result.stderr and "parameters: N" in result.stderr
    assert "Loading weights" not in result.stderr + result.stdout


def test_lm_eval_results_record_what_each_expert_spent(runs) -> None:
    summary = read_results(runs["coe"])["config"]["coe"]
    spend = summary["spend"]
    documents = {}
    for per_task in summary["documents_per_expert"].values():
        for expert, count in per_task.items():
            documents[expert] = documents.get(expert, 0) + count
    assert {e: row["documents"] for e, row in spend.items() if row["documents"]} == documents
    for expert in documents:
        assert spend[expert]["requests"] >= documents[expert], "a document needs at least one request"
        assert spend[expert]["wall_seconds"] > 0
        assert spend[expert]["generated_tokens"] > 0 and spend[expert]["tokens_counted_as"] == "tokenizer"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A records folder with every 15th real question (802, all subjects) for the two experts."""
    return write_mmlu_pro_records(tmp_path_factory.mktemp("cost_records"), mmlu_pro_questions()[::15], [WEAK, STRONG])


def test_evaluate_draws_the_accuracy_cost_curve(records: Path, tmp_path: Path, capsys) -> None:
    common = ["--records", str(records), "--experts", WEAK, STRONG]
    (tmp_path / "costs.json").write_text(json.dumps({"models": {WEAK: {"parameters": 1}, STRONG: {"parameters": 10}}}))
    assert main(["train", *common, "--router", "query", "--tuning", "cv", "--folds", "3", "--no-guard", "--quiet",
                 "--no-plots", "--costs", str(tmp_path / "costs.json"), "--prior-field", "src",
                 "--output", str(tmp_path / "router")]) == 0
    trained = Router.load(tmp_path / "router")
    assert trained.prior_field == "src" and len(trained.cell_values_) > 10, "the prior is read from the src field"
    assert main(["evaluate", "--router", str(tmp_path / "router"), *common, "--no-plots",
                 "--output", str(tmp_path / "stored")]) == 0
    stored = json.loads((tmp_path / "stored" / "cost_curve.json").read_text())
    assert stored["costs"] == {WEAK: 1.0, STRONG: 10.0}, "the costs the router was trained with"
    shipped = Path(__file__).resolve().parents[1] / "tasks" / "mmlu_pro" / "parameter_counts.json"
    assert main(["evaluate", "--router", str(tmp_path / "router"), *common, "--costs", str(shipped),
                 "--output", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "APGR" in printed and "CPT(50 %)" in printed
    curve = json.loads((tmp_path / "eval" / "cost_curve.json").read_text())
    assert (tmp_path / "eval" / "cost_curve.png").stat().st_size > 10_000
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    data = load_mmlu_pro(records, [WEAK, STRONG])
    held = data.subset(split_from_keys(data, read_split(tmp_path / "router" / "split.json"))["test"])
    assert curve["documents"] == len(held) == evaluation["documents"]
    for index, expert in enumerate(data.experts):
        assert curve["singles"][expert]["accuracy"] == pytest.approx(held.correct[:, index].mean())
    assert curve["costs"] == {WEAK: 8.0, STRONG: 70.6}, "the published parameter counts"
    assert (curve["weak"], curve["strong"]) == (WEAK, STRONG)
    assert curve["accuracy_router"]["accuracy"] == pytest.approx(evaluation["accuracy"])
    assert curve["oracle"]["accuracy"] == pytest.approx(held.correct.max(axis=1).mean())
    shares = [p["strong_share"] for p in curve["sweep"]]
    assert min(shares) == 0.0 and max(shares) > 0.5
    assert 0 <= curve["CPT_50"] <= 1 and curve["CPT_50"] <= curve["CPT_80"] <= 1
    front = curve["pareto_front"]
    assert all(not (q["cost"] <= p["cost"] and q["accuracy"] > p["accuracy"]) for p in front for q in front)
    assert all(row["holds"] for row in curve["calibrated_budgets"])
    assert curve["documents_kind"] == "held-out"
    assert main(["evaluate", "--router", str(tmp_path / "router"), *common, "--costs", str(shipped), "--no-plots",
                 "--subset", "in-sample", "--output", str(tmp_path / "in_sample")]) == 0
    assert "IN-SAMPLE cost curve" in capsys.readouterr().out, "a curve on fitted documents says so"
    assert json.loads((tmp_path / "in_sample" / "cost_curve.json").read_text())["documents_kind"] == "IN-SAMPLE"


def test_config_costs_and_budget(fitted, tmp_path: Path) -> None:
    import copy

    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.routers.table import TableRouter

    fitted["router"].save(tmp_path / "router")
    raw = {"router": str(tmp_path / "router"), "experts": {WEAK: {"model": "hf", "parameters": 8.0},
                                          STRONG: {"model": "hf", "parameters": 46.7, "active_parameters": 12.9}},
           "budget": {"share": 0.5}}
    config = load_config(raw, known_models=lambda: ["hf"])
    assert config.costs == {WEAK: 8.0, STRONG: 12.9} and config.budget == Budget(share=0.5)
    overridden = load_config(raw, overrides={"budget.share": "0.3", f"experts.{WEAK}.cost": "2"},
                             known_models=lambda: ["hf"])
    assert overridden.budget.share == 0.3 and overridden.costs[WEAK] == 2.0
    for change, words in [({"cost_weight": 0.1}, "not both"), ({"budget": {"share": 1.5}}, "budget.share"),
                          ({"budget": {"mean_cost": 5, "share": 0.2}}, "exactly one"),
                          ({"budget": {"shares": 0.2}}, "unknown key"), ({"cost_unit": "hour"}, "cost_unit")]:
        with pytest.raises(ConfigError, match=words):
            load_config({**raw, **change}, known_models=lambda: ["hf"])
    TableRouter.from_table({"law": WEAK}, experts=[WEAK, STRONG]).save(tmp_path / "table")
    with pytest.raises(ConfigError, match="need a query or cascade router.*is a table router"):
        load_config({**raw, "router": str(tmp_path / "table")}, known_models=lambda: ["hf"])
    with pytest.raises(ConfigError, match="kind 'query'"):
        CostAwareRouter(TableRouter.load(tmp_path / "table"), config.costs, cost_weight=0.1)
    trained_with_costs = copy.deepcopy(fitted["router"])
    trained_with_costs.metadata_ = {**trained_with_costs.metadata_, "costs": {WEAK: 1.0, STRONG: 5.0}}
    trained_with_costs.save(tmp_path / "router")
    bare = {"router": str(tmp_path / "router"), "experts": {WEAK: {"model": "hf"}, STRONG: {"model": "hf", "cost": 3}},
            "cost_weight": 0.1}
    assert load_config(bare, known_models=lambda: ["hf"]).costs == {WEAK: 1.0, STRONG: 3.0}, "the config's cost wins"


def test_session_routes_under_a_budget_given_as_a_model_args_override(fitted, tmp_path: Path) -> None:
    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.core.session import CoESession

    router, test = fitted["router"], fitted["test"]
    router.save(tmp_path / "router")
    raw = {"router": str(tmp_path / "router"), "result_cache": False,
           "experts": {WEAK: {"model": "hf", "parameters": 8.0}, STRONG: {"model": "hf", "parameters": 70.6}}}
    config = load_config(raw, overrides={"budget.share": "0.3"}, known_models=lambda: ["hf"])

    def never_built(spec):
        raise AssertionError(f"expert {spec.name} must not be loaded for routing")

    session = CoESession(config, never_built)
    share = np.mean([e == STRONG for e in session.route(test.documents)])
    record = session.summary()
    assert record["cost_routing"]["budget"] == {"share": 0.3} and record["cost_routing"]["cost_weight"] > 0
    assert share <= 0.3 + budget_tolerance(router.calibration_scores(), np.array([8.0, 70.6]), Budget(share=0.3),
                                           router.experts_, session.router.cost_weight_, len(test))
    assert record["spend"][STRONG]["documents"] == int(round(share * len(test)))
    # the file's budget gives way to a command-line cost_weight, and the other way round
    weighted = load_config({**raw, "budget": {"share": 0.5}}, overrides={"cost_weight": "0.001"},
                           known_models=lambda: ["hf"])
    assert (weighted.budget, weighted.cost_weight) == (None, 0.001)
    budgeted = load_config({**raw, "cost_weight": 0.001}, overrides={"budget.share": "0.3"}, known_models=lambda: ["hf"])
    assert (budgeted.budget.share, budgeted.cost_weight) == (0.3, None)
    with pytest.raises(ConfigError, match="not both"):
        load_config({**raw, "cost_weight": 0.001, "budget": {"share": 0.5}}, known_models=lambda: ["hf"])


def test_costs_stored_in_a_router_must_be_finite_and_non_negative(fitted, tmp_path: Path) -> None:
    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.routers.registry import RouterFormatError

    fitted["router"].save(tmp_path / "router")
    manifest = json.loads((tmp_path / "router" / "router.json").read_text())
    (tmp_path / "router" / "router.json").write_text(json.dumps({**manifest, "costs": {WEAK: float("nan"), STRONG: -5}}))
    raw = {"router": str(tmp_path / "router"), "result_cache": False, "cost_weight": 0.01,
           "experts": {WEAK: {"model": "hf"}, STRONG: {"model": "hf"}}}
    with pytest.raises(RouterFormatError, match="must map experts to finite numbers"):
        load_config(raw, known_models=lambda: ["hf"])


def test_cost_curve_edge_pools_and_budgets_it_cannot_meet() -> None:
    """Regression cases: equal costs, one expert, and a made-up mean-cost budget below the cheapest expert."""
    from benchcoe_plugins.training.cost_curve import cost_curve

    rng = np.random.default_rng(1)
    scores, correct = rng.uniform(size=(200, 2)), (rng.uniform(size=(200, 2)) < 0.5).astype(float)
    equal = cost_curve(scores, correct, ["a", "b"], np.array([8.0, 8.0]), scores.argmax(axis=1))
    assert equal["APGR"] is None or np.isfinite(equal["APGR"])
    assert len(equal["sweep"]) == 1, "with equal costs every weight routes the same"
    single = cost_curve(scores[:, :1], correct[:, :1], ["a"], np.array([8.0]), np.zeros(200, dtype=int))
    assert single["weak"] == single["strong"] == "a" and single["APGR"] is None
    curve = cost_curve(scores, correct, ["small", "big"], np.array([8.0, 13.0]), scores.argmax(axis=1),
                       calibration_scores=scores)
    unreachable = [row for row in curve["calibrated_budgets"] if "unreachable" in row]
    assert [row["budget"] for row in unreachable] == [{"mean_cost": 3.9}, {"mean_cost": 6.5}], \
        "30 % and 50 % of 13 are below the cheapest cost, 8"


def test_shares_below_every_setting_are_not_credited_with_a_setting_above_them() -> None:
    """With --strong the cheapest expert, even the accuracy router sends it a share of the documents; at a
    smaller share no setting works, so the curve shows none there and APGR counts only the weak expert
    alone (PGR 0), not the setting at the smallest share."""
    from benchcoe_plugins.training.cost_curve import SHARE_GRID, cost_curve, trapezoid_mean

    rng = np.random.default_rng(5)
    correct = (rng.uniform(size=(300, 2)) < [0.5, 0.35]).astype(float)
    scores = correct + rng.normal(scale=0.6, size=correct.shape)
    curve = cost_curve(scores, correct, ["cheap", "dear"], np.array([1.0, 10.0]), scores.argmax(axis=1),
                       strong="cheap", weak="dear")
    smallest = min(p["strong_share"] for p in curve["sweep"])
    assert 0.2 < smallest < 1, smallest
    assert curve["at_share"]["0.2"]["router"] is None
    low, high = curve["singles"]["dear"]["accuracy"], curve["singles"]["cheap"]["accuracy"]
    points = sorted(curve["sweep"], key=lambda p: (p["strong_share"], -p["cost_weight"]))
    pgrs = []
    for x in SHARE_GRID:
        below = [p for p in points if p["strong_share"] <= x + 1e-12]
        pgrs.append(0.0 if not below else (max(below, key=lambda p: (p["strong_share"], -p["cost_weight"]))["accuracy"]
                                           - low) / (high - low))
    assert curve["APGR"] == pytest.approx(trapezoid_mean(np.array(pgrs), SHARE_GRID))


def test_a_curve_pays_each_choice_and_shows_each_expert_at_its_own_cost() -> None:
    """As in a cascade: choosing the second expert pays both (8 + 70), yet its own point stands at 70,
    matching it is measured against 70, and the mean-cost budgets are fractions of 70."""
    from benchcoe_plugins.training.cost_curve import cost_curve

    rng = np.random.default_rng(3)
    correct = (rng.uniform(size=(400, 2)) < [0.4, 0.6]).astype(float)
    scores = correct + rng.normal(scale=0.5, size=correct.shape)  # informative: the sweep can match the second
    paid, own = np.array([8.0, 78.0]), np.array([8.0, 70.0])
    curve = cost_curve(scores, correct, ["first", "second"], paid, scores.argmax(axis=1), strong="second",
                       weak="first", calibration_scores=scores, own_costs=own)
    assert curve["costs"] == {"first": 8.0, "second": 70.0}
    assert [curve["singles"][e]["cost"] for e in ("first", "second")] == [8.0, 70.0]
    assert all(p["cost"] == curve["singles"][p["name"]]["cost"] for p in curve["pareto_front"] if "name" in p)
    share = curve["accuracy_router"]["strong_share"]
    assert curve["accuracy_router"]["cost"] == pytest.approx(8.0 + 70.0 * share), "the first is paid on every choice"
    assert curve["random_mix"][-1]["cost"] == 78.0
    high = curve["singles"]["second"]["accuracy"]
    matching = min(p["cost"] for p in curve["sweep"] if p["accuracy"] >= high)
    assert curve["cost_to_match_strong"] == pytest.approx(matching / 70.0)
    assert [row["budget"] for row in curve["calibrated_budgets"] if "mean_cost" in row["budget"]] == \
        [{"mean_cost": 21.0}, {"mean_cost": 35.0}]


def test_calibrated_share_budgets_limit_the_chosen_strong_expert() -> None:
    from benchcoe_plugins.training.cost_curve import cost_curve

    rng = np.random.default_rng(2)
    scores, correct = rng.uniform(size=(600, 3)), (rng.uniform(size=(600, 3)) < 0.5).astype(float)
    costs = np.array([1.0, 5.0, 10.0])
    curve = cost_curve(scores, correct, ["a", "b", "c"], costs, scores.argmax(axis=1), strong="b",
                       calibration_scores=scores)
    shares = [row for row in curve["calibrated_budgets"] if "share" in row["budget"]]
    assert all(row["budget"]["expert"] == "b" for row in shares)
    for row in shares:
        chosen = choose(scores, costs, row["cost_weight"])
        assert (chosen == 1).mean() <= row["budget"]["share"] + 1e-12, "the same scores: the budget holds exactly"


def test_a_share_budget_counts_every_router_expert_a_config_expert_plays(fitted, tmp_path: Path) -> None:
    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.core.session import CoESession

    router, test = fitted["router"], fitted["test"]
    router.save(tmp_path / "router")
    raw = {"router": str(tmp_path / "router"), "result_cache": False, "budget": {"share": 0.0, "expert": "both"},
           "experts": {"both": {"model": "hf", "cost": 70.6, "router_expert": [WEAK, STRONG]},
                       "cheap": {"model": "hf", "cost": 1.0}}}
    with pytest.raises(ConfigError, match="cannot be met"):
        CoESession(load_config(raw, known_models=lambda: ["hf"]), lambda spec: None)
    # no budget.expert: the most expensive configured expert, with both router experts it plays, gets every
    # document, so 99 % cannot be met (counting one of the two router experts, it could)
    default = {**raw, "budget": {"share": 0.99}}
    with pytest.raises(ConfigError, match="cannot be met"):
        CoESession(load_config(default, known_models=lambda: ["hf"]), lambda spec: None)
    both = CostAwareRouter(router, COSTS, budget=Budget(share=1.0, expert=(WEAK, STRONG)))
    assert both.describe()["budget"] == {"share": 1.0, "expert": [WEAK, STRONG]} and both.cost_weight_ == 0.0


@pytest.mark.parametrize("raw", [{"cost_weight": float("nan")}, {"cost_weight": float("inf")},
                                 {"budget": {"mean_cost": float("nan")}}])
def test_non_finite_cost_settings_are_rejected(raw: dict) -> None:
    from benchcoe_plugins.core.config import _cost_policy

    with pytest.raises(ConfigError, match="finite number"):
        _cost_policy(raw)


def test_parameter_counts_read_active_parameters_alone_and_reject_bad_counts(tmp_path: Path) -> None:
    from benchcoe_plugins.routers.cost import parameter_counts

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"models": {"moe": {"active_parameters": 12.9}, "dense": {"parameters": 8}}}))
    assert parameter_counts(good) == {"moe": 12.9, "dense": 8.0}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {"a": {"parameters": -8.0}}}))
    with pytest.raises(ConfigError, match="finite number >= 0"):
        parameter_counts(bad)
    scores = np.array([[0.2, np.nan], [0.5, 0.1]])
    from benchcoe_plugins.core.errors import RouterFormatError

    with pytest.raises(RouterFormatError, match="NaN"):
        calibrate_cost_weight(scores, np.array([1.0, 2.0]), Budget(share=0.5), ["a", "b"])


@pytest.mark.parametrize("rows, experts, seed", [(300, 2, 0), (300, 5, 1), (200, 11, 2)])
def test_the_sweep_has_every_setting_a_cost_weight_can_give(rows: int, experts: int, seed: int) -> None:
    """Any cost weight routes exactly as one of the swept settings does (same mean cost and strong share)."""
    from benchcoe_plugins.training.cost_curve import sweep_points, weight_grid

    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(rows, experts)).astype(np.float32)
    correct = (rng.uniform(size=(rows, experts)) < 0.5).astype(float)
    costs = rng.uniform(1, 70, size=experts)
    strong = int(np.argmax(costs))
    weights = weight_grid(scores, costs)
    swept = {(round(p["cost"], 9), round(p["strong_share"], 9))
             for p in sweep_points(scores, correct, costs, strong, weights)}
    assert len(swept) == len(weights), "each swept setting routes differently"
    for weight in rng.uniform(0, weights[-1] * 1.5, size=500):
        choices = choose(scores, costs, weight)
        assert (round(float(costs[choices].mean()), 9), round(float((choices == strong).mean()), 9)) in swept


def test_cpt_is_the_exact_share_not_a_grid_step() -> None:
    """Weak always wrong, strong right on the first 790 of 1,000 documents, which the router ranks first:
    half the gap (0.395) is recovered at exactly 395 strong calls."""
    from benchcoe_plugins.training.cost_curve import cost_curve

    documents = 1000
    scores = np.column_stack([np.zeros(documents), 1.0 - np.arange(documents) / documents])
    correct = np.column_stack([np.zeros(documents), np.arange(documents) < 790])
    for dtype in (np.float32, np.float64):  # records are scored as float32: a point at exactly p still counts
        curve = cost_curve(scores, correct.astype(dtype), ["weak", "strong"], np.array([1.0, 10.0]),
                           scores.argmax(axis=1))
        assert curve["CPT_50"] == pytest.approx(0.395, abs=1e-12)
        assert curve["CPT_80"] == pytest.approx(0.632, abs=1e-12), "0.8 x 0.79 = 0.632"


def test_counting_tokens_never_loses_a_paid_answer(tmp_path) -> None:
    """An API expert's tokenizer (tiktoken, lm-eval's remote tokenizer) takes no ``add_special_tokens``,
    and one may fail outright: the answers are stored and counted anyway. The API model itself cannot run
    here (no network): a stand-in object carries the tokenizer, the answers come from ``call``."""
    from types import SimpleNamespace

    from benchcoe_plugins.experts.pool import ExpertPool, Job
    from benchcoe_plugins.experts.spec import ExpertSpec

    class TextOnly:  # the signature of lm-eval's RemoteTokenizer.encode and of tiktoken's Encoding.encode
        def encode(self, text):
            return list(text.encode())

    class Broken:
        def encode(self, text, **_):
            raise RuntimeError("remote tokenizer unreachable")

    for tokenizer, tokens, counted_as in ((TextOnly(), 3 * 18, "tokenizer"), (Broken(), 3 * 4, "whitespace words")):
        specs = {"gpt": ExpertSpec("gpt", "openai-completions", {"model": "gpt-3.5-turbo-instruct"})}
        store = tmp_path / type(tokenizer).__name__
        calls: list[int] = []

        def call(model, kind, requests):
            calls.append(len(requests))
            return ["The answer is (B)."] * len(requests)

        pool = ExpertPool(specs, lambda spec: SimpleNamespace(tokenizer=tokenizer), store)
        jobs = [Job("gpt", "generate_until", f"q{i}", f"k{i}") for i in range(3)]
        assert pool.run(jobs, call) == ["The answer is (B)."] * 3
        spent = pool.spend.record()["gpt"]
        assert (spent["generated_tokens"], spent["tokens_counted_as"]) == (tokens, counted_as)
        pool.close()
        again = ExpertPool(specs, lambda spec: SimpleNamespace(tokenizer=tokenizer), store)
        again.run(jobs, call)
        assert calls == [3] and again.from_store["gpt"] == 3, "the rerun is served from the store"
        again.close()
