"""The cascade router on real MMLU-Pro records (Llama-3.1-8B-Instruct first, Llama-3.1-70B second):
train / evaluate / reload through the CLI, budgets on held-out documents, and the real ``lm_eval``
CLI with replay experts, where the first expert's recorded text decides each escalation."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchcoe_plugins.cli import main
from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.routers.cascade import DEFAULT_ANSWER_PATTERN, answer_features
from benchcoe_plugins.routers.cost import cascade_gain_threshold
from benchcoe_plugins.training.dataset import read_split, split_from_keys
from benchcoe_plugins.training.outputs import record_outputs
from benchcoe_plugins.training.records import load_mmlu_pro, read_jsonl
from conftest import (SHARED_DATA, mmlu_pro_questions, read_results, read_samples, run_cli, seeded_harness_env,
                      write_mmlu_pro_records)

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mmlu_pro").is_dir(), reason="needs ../shared/data")
MMLU = SHARED_DATA / "mmlu_pro"
FIRST, SECOND = "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B"
COSTS = {"models": {FIRST: {"parameters": 8.0}, SECOND: {"parameters": 70.6}}}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """Every 5th real question (2,407, all subjects) with both experts' records, outputs included."""
    root = write_mmlu_pro_records(tmp_path_factory.mktemp("cascade_records"), mmlu_pro_questions()[::5], [FIRST, SECOND])
    (root / "costs.json").write_text(json.dumps(COSTS))
    return root


@pytest.fixture(scope="module")
def trained(records: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cascade") / "router"
    assert main(["train", "--records", str(records), "--experts", FIRST, SECOND, "--router", "cascade",
                 "--text", "question+options", "--fields", "src", "--costs", str(records / "costs.json"),
                 "--quiet", "--no-plots", "--output", str(out)]) == 0
    return out


def held_out(records: Path, router_dir: Path):
    data = load_mmlu_pro(records, [FIRST, SECOND])
    return data.subset(split_from_keys(data, read_split(router_dir / "split.json"))["test"])


def test_answer_features_read_what_the_first_expert_wrote() -> None:
    texts = ["Step one.\nThe answer is (C).", "I think A.\nI think A.\nI think A.", "the answer is (B), no, the answer is D", ""]
    features = answer_features(texts, DEFAULT_ANSWER_PATTERN)
    assert features[:, 0].tolist() == [1, 0, 1, 0], "an answer the task's filter can extract"
    assert features[:, 1].tolist() == [1, 0, 2, 0], "how many different answers it named"
    assert features[1, 3] == pytest.approx(1 / 3) and features[0, 3] == 1.0, "a looping answer repeats its lines"
    assert features[3, 2] == 0.0 and features[0, 2] == pytest.approx(np.log1p(len(texts[0])))


def test_train_evaluate_reload_on_real_records(records: Path, trained: Path, tmp_path: Path, capsys) -> None:
    manifest = json.loads((trained / "router.json").read_text())
    assert manifest["kind"] == "cascade" and manifest["experts"] == [FIRST, SECOND]
    assert manifest["tuning"]["C"] in (0.1, 0.3, 1.0, 3.0) and len(manifest["tuning"]["recovered_area"]) == 4
    router = Router.load(trained)
    test = held_out(records, trained)
    outputs = record_outputs(records, FIRST, test)
    escalate, gain = router.escalate(test.documents, outputs)
    again = Router.load(trained).escalate(test.documents, outputs)
    assert (escalate == again[0]).all() and np.allclose(gain, again[1]), "identical decisions after reload"
    assert 0.05 < escalate.mean() < 0.95, "it escalates some documents, not all or none"
    # documents with no extractable answer gain most from escalating: the 8B is almost always wrong there
    answered = answer_features(outputs, DEFAULT_ANSWER_PATTERN)[:, 0] > 0
    assert gain[~answered].mean() > gain[answered].mean() + 0.1

    assert main(["evaluate", "--router", str(trained), "--records", str(records), "--experts", FIRST, SECOND,
                 "--no-plots", "--output", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "CPT(50 %)" in printed
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    chosen = np.where(escalate, test.correct[:, 1], test.correct[:, 0])
    assert evaluation["documents"] == len(test)
    assert evaluation["accuracy"] == pytest.approx(chosen.mean(), abs=1e-6), "accuracy of the escalation decisions"
    curve = json.loads((tmp_path / "eval" / "cost_curve.json").read_text())
    assert curve["cascade"]["first"] == FIRST and curve["costs"] == {FIRST: 8.0, SECOND: 70.6}
    assert curve["accuracy_router"]["strong_share"] == pytest.approx(escalate.mean())
    assert curve["accuracy_router"]["cost"] == pytest.approx(8.0 + 70.6 * escalate.mean()), "the first is always paid"
    random_at = {round(p["strong_share"], 1): p["accuracy"] for p in curve["random_mix"]}
    assert curve["at_share"]["0.5"]["router"] > random_at[0.5], "better than escalating at random"
    assert all(row["holds"] for row in curve["calibrated_budgets"])
    assert main(["report", "--records", str(records), "--router", f"cascade={trained}", "--output",
                 str(tmp_path / "report")]) == 0
    reported = json.loads((tmp_path / "report" / "per_subject.json").read_text())["accuracy"]["CoE cascade"]
    assert reported["overall"] == pytest.approx(chosen.mean()), "report counts the escalated documents' second answers"


@pytest.mark.parametrize("budget", [{"share": 0.2}, {"share": 0.5}, {"mean_cost": 40.0}])
def test_a_budget_holds_on_held_out_documents(records: Path, trained: Path, tmp_path: Path, budget: dict) -> None:
    router = Router.load(trained)
    experts = {name: {"model": "coe_replay", "parameters": COSTS["models"][name]["parameters"],
                      "model_args": {"records": str(records / "records" / f"{name}.jsonl.gz")}} for name in (FIRST, SECOND)}
    config = load_config({"router": str(trained), "budget": budget, "experts": experts},
                         known_models=lambda: ["coe_replay"])
    threshold = cascade_gain_threshold(router, config)
    test = held_out(records, trained)
    escalate, _ = router.escalate(test.documents, record_outputs(records, FIRST, test), threshold)
    n, calibration = len(test), len(router.calibration_scores())
    if "share" in budget:
        p = budget["share"]
        tolerance = 3 * np.sqrt(p * (1 - p) * (1 / n + 1 / calibration))
        assert escalate.mean() <= p + tolerance and escalate.mean() >= p - 0.1
    else:
        cost = 8.0 + 70.6 * escalate.mean()
        assert cost <= 40.0 + 3 * 70.6 * np.sqrt(0.25 * (1 / n + 1 / calibration)) and cost >= 30.0
    weightless = load_config({**config.raw, "budget": None, "cost_weight": 0}, known_models=lambda: ["coe_replay"])
    assert cascade_gain_threshold(router, weightless) == 0.0, "cost weight 0: escalate wherever the second is better"
    from benchcoe_plugins.core.session import CoESession

    record = CoESession(config, build_expert=lambda spec: None).cost_routing()  # the results JSON's coe.cost_routing
    assert record["budget"] == budget and record["gain_threshold"] == pytest.approx(threshold), record


def lm_eval_config(tmp_path: Path, router: Path, **extra) -> Path:
    replay = {FIRST: {"replay": "text"}, SECOND: {"replay": "answer"}}
    config = {"router": str(router), **extra,
              "experts": {name: {"model": "coe_replay", "parameters": COSTS["models"][name]["parameters"],
                                 "model_args": {"records": str(MMLU / "records" / f"{name}.jsonl.gz"),
                                                "key": "question_id", **replay[name]}} for name in (FIRST, SECOND)}}
    path = tmp_path / "cascade.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return seeded_harness_env(tmp_path_factory.mktemp("hf_home"))


@pytest.mark.slow
def test_lm_eval_cascade_escalates_on_the_first_experts_answer(env, trained: Path, tmp_path: Path) -> None:
    """The unchanged ``mmlu_pro_biology`` task through the real CLI: the 8B replays its recorded text,
    the router reads it, the 70B answers the escalated documents; the score is recomputed exactly."""
    config = lm_eval_config(tmp_path, trained)
    out = tmp_path / "out"
    run_cli(["lm_eval", "--model", "coe", "--model_args", f"config={config}", "--tasks", "mmlu_pro_biology",
             "--limit", "60", "--output_path", str(out), "--log_samples"], cwd=tmp_path, env=env)
    samples = read_samples(out)
    log = [json.loads(line) for line in next(out.rglob("*routing*.jsonl")).read_text().splitlines()]
    assert len(log) == len(samples) == 60
    docs = {row["doc_id"]: samples[("mmlu_pro_biology", row["doc_id"])]["doc"] for row in log}
    texts = {r["question_id"]: r["generated_text"] for r in read_jsonl(MMLU / "records" / f"{FIRST}.jsonl.gz")}
    second = {r["question_id"]: r for r in read_jsonl(MMLU / "records" / f"{SECOND}.jsonl.gz")}
    router = Router.load(trained)
    from benchcoe_plugins.core.documents import RoutingDocument

    documents = [RoutingDocument("mmlu_pro_biology", row["doc_id"], docs[row["doc_id"]]["question"], docs[row["doc_id"]])
                 for row in log]
    escalate, gain = router.escalate(documents, [texts[d.doc["question_id"]] for d in documents])
    assert [row["expert"] for row in log] == [SECOND if up else FIRST for up in escalate.tolist()]
    assert all(row["first_expert"] == FIRST for row in log)
    assert np.allclose([row["score"] for row in log], gain, atol=1e-6)
    assert 0 < escalate.sum() < 60

    def first_correct(doc: dict) -> bool:  # the task's own filter: the first "answer is (X)" of the text
        found = re.search(r"answer is \(?([ABCDEFGHIJ])\)?", texts[doc["question_id"]])
        return bool(found) and found.group(1) == doc["answer"]

    expected = np.mean([second[d.doc["question_id"]]["pred"] == d.doc["answer"] if up else first_correct(d.doc)
                        for d, up in zip(documents, escalate.tolist())])
    results = read_results(out)
    assert results["results"]["mmlu_pro_biology"]["exact_match,custom-extract"] == pytest.approx(expected)
    spend = results["config"]["coe"]["spend"]
    assert spend[FIRST]["documents"] == 60, "the first expert answered every document"
    assert spend[SECOND]["documents"] == int(escalate.sum())
    assert spend[FIRST]["requests"] == 60 and spend[SECOND]["requests"] == int(escalate.sum())


@pytest.mark.slow
def test_lm_eval_cascade_refuses_log_likelihood_tasks_before_any_expert_runs(env, trained: Path, tmp_path: Path) -> None:
    config = lm_eval_config(tmp_path, trained)
    result = run_cli(["lm_eval", "--model", "coe", "--model_args", f"config={config}", "--tasks",
                      "leaderboard_mmlu_pro", "--limit", "3", "--output_path", str(tmp_path / "out")],
                     cwd=tmp_path, env=env, check=False)
    assert result.returncode != 0
    assert "generate_until tasks only" in result.stderr and "loglikelihood" in result.stderr
    assert "Traceback" not in result.stderr


def test_cascade_bad_input_is_one_line(records: Path, tmp_path: Path, capsys) -> None:
    def folder(name: str, first_rows) -> Path:
        root = tmp_path / name
        (root / "records").mkdir(parents=True)
        (root / "questions.jsonl.gz").write_bytes((records / "questions.jsonl.gz").read_bytes())
        (root / "records" / f"{SECOND}.jsonl.gz").write_bytes((records / "records" / f"{SECOND}.jsonl.gz").read_bytes())
        for expert in (FIRST, "another"):
            with gzip.open(root / "records" / f"{expert}.jsonl.gz", "wt") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in first_rows)
        return root

    rows = list(read_jsonl(records / "records" / f"{FIRST}.jsonl.gz"))
    out = tmp_path / "router"

    def train(root: Path, *extra: str) -> str:
        assert main(["train", "--records", str(root), "--router", "cascade", "--quiet", "--no-plots",
                     "--output", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out.exists(), "nothing fitted or written"
        return err

    three = folder("three", rows)
    assert "takes two --experts" in train(three, "--experts", FIRST, SECOND, "another")
    bare = folder("bare", [{k: v for k, v in r.items() if k != "generated_text"} for r in rows])
    assert "no answer text" in train(bare, "--experts", FIRST, SECOND)
    assert "not a regular expression" in train(three, "--experts", FIRST, SECOND, "--answer-pattern", "answer is (")
    assert "at least 2 folds" in train(three, "--experts", FIRST, SECOND, "--folds", "1")


def session_run(trained: Path, tmp_path: Path, requests: list[dict], experts: dict | None = None,
                world_size: int = 1, rank_loading: str = "needed", chat_answers: bool = False):
    """A CoESession over the trained cascade with stand-in experts that answer from the records (no model
    loads): the first returns its recorded text (as lmms-eval chat models do, in a GenerationResult, with
    ``chat_answers``), the second a fixed answer. Returns the session and the
    (expert, question index, has_image) of every request each expert was called with."""
    from benchcoe_plugins.core.documents import RoutingDocument
    from benchcoe_plugins.core.session import CoESession

    questions = list(read_jsonl(MMLU / "questions.jsonl.gz"))[:40]
    texts = {r["question_id"]: r["generated_text"] for r in read_jsonl(MMLU / "records" / f"{FIRST}.jsonl.gz")}
    experts = experts or {FIRST: {"model": "hf"}, SECOND: {"model": "hf"}}
    for name, spec in experts.items():
        folder = tmp_path / f"weights_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        spec.setdefault("model_args", {"pretrained": str(folder)})
    (tmp_path / "coe.yaml").write_text(yaml.safe_dump({"router": str(trained), "experts": experts,
                                                       "result_cache": False, "rank_loading": rank_loading}))
    from lmms_eval.api.instance import GenerationResult

    from benchcoe_plugins.adapters.lmms_eval.requests import plain_answer

    session = CoESession(load_config(tmp_path / "coe.yaml", known_models=lambda: ["hf", "llava_hf"]),
                         lambda spec: spec.name, world_size=world_size, plain_answer=plain_answer)
    calls: list[tuple] = []

    def call(model, kind, batch):
        calls.extend((model, r["i"], r["image"]) for r in batch)
        if model != FIRST:
            return ["The answer is (A)." for _ in batch]
        recorded = [texts[questions[r["i"]]["question_id"]] for r in batch]
        return [GenerationResult(text=t) for t in recorded] if chat_answers else recorded

    def document(r):
        q = questions[r["i"]]
        return RoutingDocument("mmlu_pro_biology", r["i"], q["question"], q, r["image"])

    session.answer("generate_until", requests, None, document, lambda e, k, r: r, lambda k, r: str(r["i"]), call)
    return session, calls


def test_copies_of_a_request_do_not_change_the_escalation(trained: Path, tmp_path: Path) -> None:
    """lm-eval pads a rank with copies of its last request and repeats requests: the cascade must read
    each distinct request once, so N ranks decide as one process."""
    once, _ = session_run(trained, tmp_path / "once", [{"i": i, "image": None} for i in range(20)])
    copies, _ = session_run(trained, tmp_path / "copies", [{"i": i, "image": None} for i in range(20) for _ in (0, 1)])
    decisions = {k: (r.expert, r.decision.score) for k, r in once.routes.items()}
    assert decisions == {k: (r.expert, r.decision.score) for k, r in copies.routes.items()}
    assert len({expert for expert, _ in decisions.values()}) == 2, "some escalate, some not: the test can fail"


def test_a_chat_experts_generation_result_is_read_as_its_text(trained: Path, tmp_path: Path) -> None:
    """lmms-eval chat models answer with GenerationResult objects: the cascade must read their text."""
    requests = [{"i": i, "image": None} for i in range(20)]
    plain, _ = session_run(trained, tmp_path / "plain", requests)
    chat, _ = session_run(trained, tmp_path / "chat", requests, chat_answers=True)
    assert {k: (r.expert, r.decision.score) for k, r in chat.routes.items()} == \
        {k: (r.expert, r.decision.score) for k, r in plain.routes.items()}


def test_a_cascade_whose_guard_kept_the_first_expert_never_escalates_nor_says_it_weighed_a_gain(
        trained: Path, tmp_path: Path) -> None:
    """The guard chose FIRST alone (mode best): every document keeps FIRST's answer, SECOND never runs, and
    the routing log gives the guard as the reason, not an expected gain the router never weighed."""
    import shutil

    folder = tmp_path / "guarded"
    shutil.copytree(trained, folder)
    manifest = json.loads((folder / "router.json").read_text())
    manifest["cascade"]["mode"], manifest["best_expert"] = "best", FIRST
    (folder / "router.json").write_text(json.dumps(manifest))
    requests = [{"i": i, "image": None} for i in range(20)]
    routed, _ = session_run(trained, tmp_path / "routed", requests)
    assert {r.expert for r in routed.routes.values()} == {FIRST, SECOND}, "unguarded, some escalate: the test can fail"
    session, calls = session_run(folder, tmp_path / "run", requests)
    assert {c[0] for c in calls} == {FIRST}
    assert {r.reason for r in session.routes.values()} == {"guard: best single expert"}


def test_every_expert_loads_once_per_rank_with_rank_loading_all(trained: Path, tmp_path: Path) -> None:
    session, _ = session_run(trained, tmp_path, [{"i": i, "image": None} for i in range(20)], world_size=2,
                             rank_loading="all")
    assert dict(session.pool.loads) == {FIRST: 1, SECOND: 1}


def test_image_free_documents_never_escalate_to_an_expert_that_needs_an_image(trained: Path, tmp_path: Path) -> None:
    experts = {FIRST: {"model": "hf", "modality": "text"}, SECOND: {"model": "llava_hf", "modality": "vision"}}
    session, calls = session_run(trained, tmp_path, [{"i": i, "image": False} for i in range(20)], experts=experts)
    assert not [c for c in calls if c[0] == SECOND], "the image-only expert got an image-free document"
    reasons = [r.reason for r in session.routes.values()]
    assert any("needs an image" in reason for reason in reasons), "some would have escalated: the test can fail"


@pytest.mark.parametrize("damage", ["pattern", "nan"])
def test_a_damaged_cascade_folder_is_one_error_at_load(trained: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    from safetensors.numpy import load_file, save_file

    from benchcoe_plugins.core.errors import RouterFormatError

    folder = tmp_path / "router"
    shutil.copytree(trained, folder)
    if damage == "pattern":
        manifest = json.loads((folder / "router.json").read_text())
        manifest["params"]["answer_pattern"] = "answer is ("
        (folder / "router.json").write_text(json.dumps(manifest))
    else:
        tensors = load_file(str(folder / "cascade.safetensors"))
        tensors["head.intercept"] = np.full_like(tensors["head.intercept"], np.nan)
        save_file(tensors, str(folder / "cascade.safetensors"))
    with pytest.raises(RouterFormatError, match="re-train"):
        Router.load(folder)


def test_in_sample_training_reads_each_parts_first_answers_once(tmp_path: Path, monkeypatch, capsys) -> None:
    """``train --router cascade --in-sample`` reads the first expert's answers of the test part and of the
    fit part once each: the in-sample report reuses those the fit read (the real reader runs; the wrapper
    only notes which documents each read was for)."""
    from benchcoe_plugins.training import outputs

    records = write_mmlu_pro_records(tmp_path, mmlu_pro_questions()[::40], [FIRST, SECOND])
    reads: list[tuple[str, ...]] = []

    def noted_read(data_dir: Path, expert: str, data):
        reads.append(tuple(data.keys()))
        return record_outputs(data_dir, expert, data)

    monkeypatch.setattr(outputs, "record_outputs", noted_read)
    assert main(["train", "--records", str(records), "--experts", FIRST, SECOND, "--router", "cascade", "--in-sample",
                 "--C", "1", "--folds", "2", "--quiet", "--no-plots", "--output", str(tmp_path / "router")]) == 0
    assert "in-sample report" in capsys.readouterr().out
    split = read_split(tmp_path / "router" / "split.json")
    assert sorted(map(len, reads)) == sorted([len(split["test"]), len(split["train"]) + len(split["validation"])])
    assert len(set(reads)) == len(reads), "no part's answers read twice"
