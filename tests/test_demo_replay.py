"""``benchcoe demo``: the unchanged ``lm_eval --model coe`` on the embedded replay pool; the
accuracy the harness reports equals the accuracy computed here from the same records on the
same documents."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import REPO, SHARED_DATA, harness_env, read_results, read_samples, run_cli

pytestmark = pytest.mark.slow
REPLAY = REPO / "tasks" / "mmlu_pro" / "replay"


def test_demo_harness_accuracy_equals_accuracy_from_records(tmp_path) -> None:
    env = harness_env({"HF_HOME": str(tmp_path / "hf")})
    result = run_cli(["benchcoe", "demo", "--output", str(tmp_path / "demo"), "--limit", "6", "--routers", "subject"],
                     cwd=tmp_path, env=env)
    assert "mmlu_pro" in result.stdout and "oracle" in result.stdout and "held-out" in result.stdout
    assert not (tmp_path / "hf" / "datasets").exists(), "the demo seeds its own datasets cache, not the user's"
    assert (tmp_path / "demo" / "hf_datasets" / "TIGER-Lab___mmlu-pro").is_dir()
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    (run,) = summary["runs"]
    assert_mmmu_pro_part(summary, tmp_path / "demo" / "mmmu_pro_subject", result.stdout)
    out = tmp_path / "demo" / "subject"
    harness = read_results(out)["results"]["mmlu_pro"]["exact_match,custom-extract"]
    assert run["harness_accuracy"] == harness

    # Independently: the expert the routing log names for each document, scored by its record.
    records = {}
    for path in REPLAY.glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as handle:
            records[path.name[: -len(".jsonl.gz")]] = {r["question_id"]: r for r in map(json.loads, handle)}
    routing = {(row["task"], int(row["doc_id"])): row["expert"]
               for row in map(json.loads, (out / "routing.jsonl").read_text().splitlines())}
    samples = read_samples(out)
    assert samples.keys() == routing.keys() and len(samples) == 14 * 6
    correct = [records[routing[key]][row["doc"]["question_id"]]["pred"] == row["doc"]["answer"]
               for key, row in samples.items()]
    assert harness == pytest.approx(sum(correct) / len(correct), abs=1e-12)
    for key, row in samples.items():  # per document, not only on average
        assert bool(row["exact_match"]) == records[routing[key]][row["doc"]["question_id"]]["correct"], key

    # And `benchcoe evaluate`, on the same documents from the records, reports the same accuracy. The router
    # was fitted on some of them, so they are evaluated as what they are: in-sample (evaluate refuses to call
    # them held-out).
    keys = [f"mmlu_pro_{row['doc']['category'].replace(' ', '_')}/{row['doc']['question_id']}"
            for row in samples.values()]
    split = json.loads((REPO / "router_ckpts" / "mmlu_pro_subject" / "split.json").read_text())
    rest = [k for k in split["train"] + split["validation"] + split["test"] if k not in set(keys)]
    split.update({"train": keys, "validation": [], "test": rest, "fitted_on": ["train"]})
    (tmp_path / "split.json").write_text(json.dumps(split))
    experts = [path.name[: -len(".jsonl.gz")] for path in REPLAY.glob("*.jsonl.gz")]
    run_cli(["benchcoe", "evaluate", "--router", str(REPO / "router_ckpts" / "mmlu_pro_subject"), "--records",
             str(SHARED_DATA / "mmlu_pro"), "--experts", *experts, "--split", str(tmp_path / "split.json"),
             "--subset", "in-sample", "--output", str(tmp_path / "evaluate"), "--no-plots"], cwd=tmp_path, env=env)
    evaluation = json.loads((tmp_path / "evaluate" / "evaluation.json").read_text())
    assert evaluation["documents"] == len(samples) and evaluation["scenario"]["in_sample"]
    assert evaluation["accuracy"] == pytest.approx(harness, abs=1e-6)


def assert_mmmu_pro_part(summary: dict, out, stdout: str) -> None:
    """The lmms-eval half of the demo: ``mmmu_acc`` of the harness == the routed experts' records."""
    (run,) = summary["mmmu_pro_runs"]
    harness = json.loads(sorted(out.rglob("*_results.json"))[-1].read_text())["results"]["mmmu_pro_standard"]
    assert run["harness_accuracy"] == harness["mmmu_acc,none"] and run["equal"]
    assert "blank placeholder" in stdout and "mmmu_pro_standard" in stdout
    records = {}
    for path in (REPO / "tasks" / "mmmu_pro" / "replay").glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as handle:
            records[path.name[: -len(".jsonl.gz")]] = {r["id"]: r["correct"] for r in map(json.loads, handle)}
    samples = [json.loads(line) for path in out.rglob("*_samples_*.jsonl") for line in path.read_text().splitlines()]
    routing = {row["doc_id"]: row["expert"] for row in map(json.loads, (out / "routing.jsonl").read_text().splitlines())}
    assert len(samples) == len(routing) == 6
    correct = [records[routing[row["doc_id"]]][row["mmmu_acc"]["id"]] for row in samples]
    assert harness["mmmu_acc,none"] == round(sum(correct) / len(correct), 5)


def test_demo_cascade_through_lmms_eval_escalates_as_the_router_reads_the_records(tmp_path) -> None:
    """The MMMU-Pro cascade through the unchanged ``python -m lmms_eval --model coemodel``: the harness's
    ``mmmu_acc`` equals the records recomputation, and each document went where the shipped router sends it
    when it reads InternVL2-Llama3-76B's recorded output (so the first expert replays what the router
    was trained on)."""
    import numpy as np

    from benchcoe_plugins.core.documents import RoutingDocument
    from benchcoe_plugins.routers.base import Router

    result = run_cli(["benchcoe", "demo", "--parts", "mmmu_pro", "--routers", "cascade", "--limit", "60",
                      "--output", str(tmp_path / "demo")], cwd=tmp_path, env=harness_env({"HF_HOME": str(tmp_path / "hf")}))
    assert "CoE cascade-level (mmmu_pro_cascade)" in result.stdout
    (run,) = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())["mmmu_pro_runs"]
    assert run["equal"] and run["harness_accuracy"] == round(run["records_accuracy"], 5)
    router = Router.load(REPO / "router_ckpts" / "mmmu_pro_cascade")
    with gzip.open(SHARED_DATA / "mmmu_pro" / "questions.jsonl.gz", "rt") as handle:
        questions = [json.loads(line) for line in handle]
    with gzip.open(REPO / "tasks" / "mmmu_pro" / "replay" / f"{router.first}.jsonl.gz", "rt") as handle:
        first_output = {r["id"]: r["response"] for r in map(json.loads, handle)}
    import pyarrow.parquet as pq

    ids = pq.read_table(REPO / "tasks" / "mmmu_pro" / "test.parquet", columns=["id"]).column("id").to_pylist()[:60]
    by_id = {q["id"]: q for q in questions}
    documents = [RoutingDocument("mmmu_pro_standard", i, by_id[key]["question"], by_id[key]) for i, key in enumerate(ids)]
    escalate, _ = router.escalate(documents, [first_output[key] for key in ids])
    routing = {int(row["doc_id"]): row["expert"]
               for row in map(json.loads, (tmp_path / "demo" / "mmmu_pro_cascade" / "routing.jsonl").read_text().splitlines())}
    assert [routing[i] for i in range(60)] == [router.second if up else router.first for up in escalate.tolist()]
    assert 0 < int(np.sum(escalate)) < 60, "both experts answer some of these documents"
