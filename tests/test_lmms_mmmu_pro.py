"""The real ``python -m lmms_eval --model coemodel --tasks mmmu_pro_standard`` on the offline
MMMU-Pro copy (``benchcoe offline-data``), with replay experts of the five VLMs.

- The harness's ``mmmu_acc`` equals the accuracy recomputed from the shipped records and the
  routing log, per document and overall, including records with no parsable answer (which
  replay a wrong letter, so lmms-eval's random fallback never decides a score).
- A text expert (``modality: text``) in the same pool: every MMMU-Pro document has an image,
  so none is routed to it as image-free; documents its router names it for reach it as text.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from conftest import REPO, SHARED_DATA, harness_env, run_cli

from benchcoe_plugins.offline.mmmu_pro import TASK, VLM_POOL

pytestmark = pytest.mark.slow
REPLAY = REPO / "tasks" / "mmmu_pro" / "replay"
LIMIT = 40
TEXT_LIMIT = 8
# Docs 21 (Psychology) and 38 (History) have no parsable answer in the 40B and 76B records.
TABLE = {"psychology": "InternVL2-40B", "history": "InternVL2-Llama3-76B", "art": "InternVL2-8B",
         "economics": "llava-onevision-qwen2-7b-vo-hf"}
FALLBACK = "llava-onevision-qwen2-72b-vo-hf"


def records() -> dict[str, dict[str, dict]]:
    out = {}
    for expert in VLM_POOL:
        with gzip.open(REPLAY / f"{expert}.jsonl.gz", "rt") as handle:
            out[expert] = {row["id"]: row for row in map(json.loads, handle)}
    return out


def replay_expert(name: str) -> dict:
    return {"model": "coe_replay", "model_args": {"records": str(REPLAY / f"{name}.jsonl.gz"), "key": "id",
                                                  "no_answer": "wrong_letter"}}


@pytest.fixture(scope="module")
def workspace(tiny_experts) -> Iterator[Path]:
    from benchcoe_plugins.routers.table import TableRouter

    root = Path(tempfile.mkdtemp(prefix="benchcoe-mmmu-pro-"))
    run_cli(["benchcoe", "offline-data"], cwd=root, env=harness_env({"HF_HOME": str(root / "hf")}))
    experts = {name: replay_expert(name) for name in VLM_POOL}
    TableRouter.from_table(TABLE, experts=VLM_POOL).save(root / "router")
    (root / "vlm.yaml").write_text(yaml.safe_dump({"name": "vlm-replay", "router": "router", "fallback": FALLBACK,
                                                   "result_cache": False, "experts": experts}))
    text = {"model": "hf", "modality": "text",
            "model_args": {"pretrained": str(tiny_experts["alpha"]), "device": "cpu", "dtype": "float32"}}
    TableRouter.from_table({**TABLE, "literature": "text"}, experts=[*VLM_POOL, "text"]).save(root / "router_text")
    (root / "mixed.yaml").write_text(yaml.safe_dump({"name": "vlm-and-text", "router": "router_text",
                                                     "fallback": FALLBACK, "result_cache": False,
                                                     "experts": {**experts, "text": text}}))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def lmms_eval(workspace: Path, config: str, out: str, limit: int, *extra: str) -> Path:
    folder = workspace / out
    run_cli(["python", "-m", "lmms_eval", "--model", "coemodel", "--model_args",
             f"config={config},routing_log={folder / 'routing.jsonl'}", "--tasks", TASK, "--limit", str(limit),
             "--output_path", str(folder), "--log_samples", *extra], cwd=workspace,
            env=harness_env({"HF_HOME": str(workspace / "hf")}))
    assert list(folder.rglob("*_results.json")), f"{out}: lmms-eval wrote no results"
    return folder


def read_run(folder: Path) -> tuple[float, dict[int, dict], dict[int, dict]]:
    results = json.loads(sorted(folder.rglob("*_results.json"))[-1].read_text())
    samples = {row["doc_id"]: row for path in folder.rglob("*_samples_*.jsonl")
               for row in map(json.loads, path.read_text().splitlines())}
    routing = {row["doc_id"]: row for row in map(json.loads, (folder / "routing.jsonl").read_text().splitlines())}
    return results["results"][TASK]["mmmu_acc,none"], samples, routing


def test_harness_mmmu_acc_equals_records_recomputation(workspace) -> None:
    accuracy, samples, routing = read_run(lmms_eval(workspace, "vlm.yaml", "vlm", LIMIT))
    recorded = records()
    assert sorted(samples) == sorted(routing) == list(range(LIMIT))
    unparsed = 0
    for doc_id, sample in samples.items():
        scored = sample["mmmu_acc"]
        record = recorded[routing[doc_id]["expert"]][scored["id"]]
        if record["pred"] is None:
            unparsed += 1
            assert scored["parsed_pred"] != scored["answer"], doc_id  # scored wrong, as the record is
        else:
            assert scored["parsed_pred"] == record["pred"], doc_id
        assert (scored["parsed_pred"] == scored["answer"]) == record["correct"], doc_id
    assert unparsed == 2, "docs 21 and 38 reach an expert whose record has no parsable answer"
    assert {row["expert"] for row in routing.values()} == set(TABLE.values()) | {FALLBACK}
    recomputed = sum(recorded[routing[d]["expert"]][samples[d]["mmmu_acc"]["id"]]["correct"] for d in samples) / LIMIT
    assert accuracy == round(recomputed, 5)


@pytest.fixture(scope="module")
def mixed_run(workspace) -> Path:
    """VLM replays with a text expert beside them (in process), shared by two tests."""
    return lmms_eval(workspace, "mixed.yaml", "mixed", TEXT_LIMIT, "--gen_kwargs", "max_new_tokens=4")


def test_text_expert_in_the_pool_gets_only_what_the_router_names(mixed_run) -> None:
    _, samples, routing = read_run(mixed_run)
    assert all("<image" in sample["input"] for sample in samples.values()), "every MMMU-Pro document has an image"
    assert not any("image-free" in row["reason"] for row in routing.values())
    literature = {d for d, s in samples.items() if s["mmmu_acc"]["subject"] == "Literature"}
    assert literature, "the slice holds a Literature document"
    assert {d for d, row in routing.items() if row["expert"] == "text"} == literature
    recorded = records()
    for doc_id in set(samples) - literature:  # the VLM replays are unaffected by the text expert beside them
        record = recorded[routing[doc_id]["expert"]][samples[doc_id]["mmmu_acc"]["id"]]
        assert (samples[doc_id]["mmmu_acc"]["parsed_pred"] == samples[doc_id]["mmmu_acc"]["answer"]) == record["correct"]


def test_lmms_eval_sample_logs_train_a_router(workspace) -> None:
    """Real lmms-eval --log_samples output (``<date>_samples_<task>.jsonl``, rows without ``doc``, one
    doc_hash for every row) joins to one training row per document, keyed by the document's own id."""
    from benchcoe_plugins.training.dataset import key_string
    from benchcoe_plugins.training.sample_logs import load_sample_logs

    pair = ["InternVL2-8B", FALLBACK]
    folders = {}
    for name in pair:
        model_args = ",".join(f"{k}={v}" for k, v in replay_expert(name)["model_args"].items())
        folders[name] = workspace / f"log_{name}"
        run_cli(["python", "-m", "lmms_eval", "--model", "coe_replay", "--model_args", model_args, "--tasks", TASK,
                 "--limit", str(LIMIT), "--output_path", str(folders[name]), "--log_samples"], cwd=workspace,
                env=harness_env({"HF_HOME": str(workspace / "hf")}))
    data = load_sample_logs({name: [folder] for name, folder in folders.items()})
    recorded = records()
    assert len(data) == LIMIT
    ids = [d.doc["id"] for d in data.documents]
    assert [key_string(d) for d in data.documents] == [f"{TASK}/{i}" for i in ids]
    for row, doc_id in zip(data.correct, ids):
        assert row.tolist() == [float(recorded[name][doc_id]["correct"]) for name in pair], doc_id
    assert all(data.subjects)
    trained = run_cli(["benchcoe", "train", *[f"--samples={n}={f}" for n, f in folders.items()], "--router", "subject",
                       "--no-guard", "--no-plots", "--quiet", "--output", str(workspace / "from_logs")], cwd=workspace,
                      env=harness_env({"HF_HOME": str(workspace / "hf")}))
    assert f"{LIMIT} documents x 2 experts" in trained.stdout
    report = run_cli(["benchcoe", "report", *[f"--run={n}={f}" for n, f in folders.items()], "--output",
                      str(workspace / "report")], cwd=workspace, env=harness_env({"HF_HOME": str(workspace / "hf")}))
    assert report.returncode == 0


def test_use_cache_is_keyed_by_the_coe_not_by_the_config_path(workspace) -> None:
    """lmms-eval keys --use_cache by --model_args alone; the same config path naming another router must
    not get the first router's answers, and an all-hit rerun still logs every document's expert."""
    from benchcoe_plugins.routers.table import TableRouter

    TableRouter.from_table({}, experts=VLM_POOL).save(workspace / "router_none")  # every document to the fallback
    recorded = records()
    accuracies = []
    for run, router in enumerate(("router", "router_none", "router_none")):
        config = yaml.safe_load((workspace / "vlm.yaml").read_text())
        (workspace / "same_path.yaml").write_text(yaml.safe_dump({**config, "router": router}))
        folder = workspace / f"cached_{run}"
        run_cli(["python", "-m", "lmms_eval", "--model", "coemodel", "--model_args", "config=same_path.yaml",
                 "--tasks", TASK, "--limit", str(LIMIT), "--output_path", str(folder), "--log_samples",
                 "--use_cache", str(workspace / "response_cache")], cwd=workspace,
                env=harness_env({"HF_HOME": str(workspace / "hf")}))
        results = json.loads(sorted(folder.rglob("*_results.json"))[-1].read_text())
        samples = {row["doc_id"]: row for path in folder.rglob("*_samples_*.jsonl")
                   for row in map(json.loads, path.read_text().splitlines())}
        routing = {row["doc_id"]: row for path in folder.rglob("routing_*.jsonl")
                   for row in map(json.loads, path.read_text().splitlines())}
        assert sorted(routing) == list(range(LIMIT)), f"run {run}: the routing log misses documents"
        recomputed = sum(recorded[routing[d]["expert"]][samples[d]["mmmu_acc"]["id"]]["correct"] for d in samples)
        accuracies.append(results["results"][TASK]["mmmu_acc,none"])
        assert accuracies[-1] == round(recomputed / LIMIT, 5), f"run {run}: answers of another router"
    assert accuracies[1] == accuracies[2] != accuracies[0]


def test_image_only_documents_go_to_the_fallback(workspace) -> None:
    """MMMU-Pro's vision setting: each question is a screenshot, the document has no question text, so a
    text router cannot read it and the fallback answers it (with one warning), whatever the context says."""
    import datasets
    import pyarrow.parquet as pq

    from benchcoe_plugins.offline.cache import cache_folder, write_cache_folder
    from benchcoe_plugins.offline.mmmu_pro import placeholder_png, shipped_mmmu_pro

    shipped = pq.read_table(shipped_mmmu_pro() / "test.parquet").to_pydict()
    text = datasets.Value("string")
    features = datasets.Features({"id": text, "image": datasets.Image(), "options": text, "answer": text,
                                  "subject": text})
    rows = [{"id": shipped["id"][i], "image": {"bytes": placeholder_png(1), "path": None}, "options": shipped["options"][i],
             "answer": shipped["answer"][i], "subject": shipped["subject"][i]} for i in range(6)]
    target = cache_folder(workspace / "hf" / "datasets", "MMMU___mmmu_pro", "vision", "0" * 40)
    write_cache_folder(target, "mmmu_pro", "vision", features,
                       {"test": datasets.Dataset.from_list(rows, features=features).data.table}, {},
                       description="six MMMU-Pro vision rows for a test", license="Apache-2.0")
    config = yaml.safe_load((workspace / "vlm.yaml").read_text())
    (workspace / "text_router.yaml").write_text(yaml.safe_dump({**config, "router": "mmmu_pro_subject"}))
    folder = workspace / "vision"
    result = run_cli(["python", "-m", "lmms_eval", "--model", "coemodel", "--model_args",
                      f"config=text_router.yaml,routing_log={folder / 'routing.jsonl'}", "--tasks", "mmmu_pro_vision",
                      "--output_path", str(folder)], cwd=workspace, env=harness_env({"HF_HOME": str(workspace / "hf")}))
    routing = [json.loads(line) for line in (folder / "routing.jsonl").read_text().splitlines()]
    assert len(routing) == 6
    assert {row["expert"] for row in routing} == {FALLBACK}
    assert all(row["reason"].startswith("fallback") for row in routing), routing[0]["reason"]
    assert (result.stdout + result.stderr).count("cannot place a document") == 1


def test_an_isolated_text_expert_answers_from_its_worker_and_a_vision_one_is_refused(workspace, mixed_run) -> None:
    config = yaml.safe_load((workspace / "mixed.yaml").read_text())
    config["experts"]["text"]["isolated"] = True
    (workspace / "mixed_isolated.yaml").write_text(yaml.safe_dump(config))
    runs = {}
    isolated = lmms_eval(workspace, "mixed_isolated.yaml", "mixed_isolated_run", TEXT_LIMIT,
                         "--gen_kwargs", "max_new_tokens=4")
    for name, folder in (("mixed", mixed_run), ("mixed_isolated", isolated)):
        _, samples, routing = read_run(folder)
        runs[name] = {d: samples[d]["filtered_resps"] for d, row in routing.items() if row["expert"] == "text"}
        coe = json.loads(sorted(folder.rglob("*_results.json"))[-1].read_text())["coe"]
        assert coe["experts"]["text"]["isolated"] is (name == "mixed_isolated")
        assert coe["spend"]["text"]["process"].startswith("worker ") is (name == "mixed_isolated")
    assert runs["mixed"] and runs["mixed_isolated"] == runs["mixed"]
    config["experts"][VLM_POOL[0]]["isolated"] = True
    (workspace / "vision_isolated.yaml").write_text(yaml.safe_dump(config))
    refused = run_cli(["python", "-m", "lmms_eval", "--model", "coemodel", "--model_args", "config=vision_isolated.yaml",
                       "--tasks", TASK, "--limit", "2"], cwd=workspace, env=harness_env({"HF_HOME": str(workspace / "hf")}),
                      check=False)
    assert refused.returncode != 0
    assert f"experts.{VLM_POOL[0]}.isolated" in refused.stderr and "Traceback" not in refused.stderr


def test_an_expert_with_its_own_task_prompt_is_warned_about(workspace) -> None:
    """mmmu_pro_standard has a qwen3_vl section (prompt format); inside the CoE lmms-eval applies the
    default one. The warning comes before any expert loads (this qwen3_vl expert then fails to load: its
    folder holds no model), once, naming the task, the sections and the expert."""
    config = yaml.safe_load((workspace / "vlm.yaml").read_text())
    weights = workspace / "not_really_qwen3_vl"  # a folder that exists but holds no model
    weights.mkdir(exist_ok=True)
    (weights / "config.json").write_text("{}")
    config["experts"][FALLBACK] = {"model": "qwen3_vl", "model_args": {"pretrained": str(weights)}}
    (workspace / "qwen.yaml").write_text(yaml.safe_dump(config))
    result = run_cli(["python", "-m", "lmms_eval", "--model", "coemodel", "--model_args", "config=qwen.yaml",
                      "--tasks", TASK, "--limit", "4"], cwd=workspace, env=harness_env({"HF_HOME": str(workspace / "hf")}),
                     check=False)
    log = result.stdout + result.stderr
    warning = f"task {TASK} has lmms_eval_specific_kwargs"
    assert log.count(warning) == 1, log[-3000:]
    assert f"expert '{FALLBACK}' answers with the task's default ones" in log
    assert "'InternVL2-8B' answers" not in log  # coe_replay has no section of its own


@pytest.mark.skipif(not (SHARED_DATA / "mmmu_pro").is_dir(), reason="needs ../shared/data")
def test_cascade_through_lmms_eval_escalates_under_a_budget(workspace) -> None:
    """A cascade InternVL2-8B -> LLaVA-OV-72B trained on the real MMMU-Pro records, run by the real
    lmms-eval CLI under ``budget: {share: 0.5}``: the 8B replays its recorded text, the routing log's
    escalations are the router's own decisions on that text, and ``mmmu_acc`` is recomputed exactly."""
    from benchcoe_plugins.cli import main
    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.routers.base import Router
    from benchcoe_plugins.routers.cost import cascade_gain_threshold
    from benchcoe_plugins.training.outputs import record_outputs
    from benchcoe_plugins.training.records import load_mmmu_pro

    first, second = "InternVL2-8B", FALLBACK
    assert main(["train", "--records", str(SHARED_DATA / "mmmu_pro"), "--experts", first, second, "--router",
                 "cascade", "--answer-pattern", r"([A-J])", "--text", "question+options", "--quiet", "--no-plots",
                 "--no-guard", "--output", str(workspace / "cascade")]) == 0  # a budget trades; no accuracy guard
    experts = {first: {**replay_expert(first), "parameters": 8.0}, second: {**replay_expert(second), "parameters": 72.0}}
    experts[first]["model_args"] = {**experts[first]["model_args"], "replay": "text"}
    config = {"name": "vlm-cascade", "router": "cascade", "result_cache": False, "budget": {"share": 0.5},
              "experts": experts}
    (workspace / "cascade.yaml").write_text(yaml.safe_dump(config))
    accuracy, samples, routing = read_run(lmms_eval(workspace, "cascade.yaml", "cascade_run", LIMIT))

    router = Router.load(workspace / "cascade")
    threshold = cascade_gain_threshold(router, load_config(workspace / "cascade.yaml", known_models=lambda: [
        "coe_replay"]))
    data = load_mmmu_pro(SHARED_DATA / "mmmu_pro", [first, second])
    by_id = {d.doc_id: i for i, d in enumerate(data.documents)}
    ids = [samples[d]["mmmu_acc"]["id"] for d in sorted(samples)]
    subset = data.subset([by_id[i] for i in ids])
    escalate, gain = router.escalate(subset.documents, record_outputs(SHARED_DATA / "mmmu_pro", first, subset), threshold)
    rows = [routing[d] for d in sorted(samples)]
    assert all(row["first_expert"] == first for row in rows)
    assert [row["expert"] for row in rows] == [second if up else first for up in escalate.tolist()]
    assert [round(row["score"], 5) for row in rows] == [round(g, 5) for g in gain.tolist()], "the same text, read alike"
    assert 0.2 <= escalate.mean() <= 0.8, "about half escalated under the share budget"
    recorded = records()
    recomputed = sum(recorded[row["expert"]][i]["correct"] for row, i in zip(rows, ids)) / LIMIT
    assert accuracy == round(recomputed, 5)
