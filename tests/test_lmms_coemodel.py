"""Real ``python -m lmms_eval --model coemodel`` runs on CPU over the STOCK tasks mmmu_val,
mmstar, scienceqa_img and scienceqa_full (offline copies seeded into a datasets cache),
with two tiny vision experts of different stock classes and one tiny lm-eval text expert.

Runs (module-scoped, shared by the assertions):
  coe_chat    chat coemodel: llava (llava_hf, chat), qwen (qwen2_5_vl run through its simple
              class: chat -> simple conversion), text (lm-eval hf)
  coe_simple  --force_simple: llava (chat class: simple -> chat conversion), qwen (simple), text
  llava_alone llava_hf chat, alone;  qwen_alone  qwen2_5_vl --force_simple, alone
  two_ranks / one_rank   torchrun --nproc_per_node 2 vs one process, llava + text experts
"""

from __future__ import annotations

from collections import Counter

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import free_port, harness_env, run_cli

pytestmark = pytest.mark.slow

TASKS = "mmmu_val,mmstar,scienceqa_img,scienceqa_full"
RUN_TASKS = ("mmmu_val", "mmstar", "scienceqa", "scienceqa_img")  # scienceqa_full = scienceqa + scienceqa_img
LLAVA_ALONE_TASKS = "mmmu_val,mmstar,scienceqa_img"
LIMIT = "4"
MAX_NEW_TOKENS = 4
# Subject / category -> expert. MMMU subjects come from the doc id; the last three rows are ScienceQA subjects.
TABLE = {
    "art": "llava", "biology": "qwen", "computer science": "qwen", "math": "text",
    "coarse perception": "llava", "fine-grained perception": "qwen", "instance reasoning": "text",
    "logical reasoning": "llava",
    "natural science": "qwen", "social science": "llava", "language science": "qwen",
}


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    from tiny_models import build_causal_lm
    from tiny_vlms import build_llava, build_qwen2_5_vl

    from benchcoe_plugins.offline.lmms_datasets import seed_lmms_datasets
    from benchcoe_plugins.routers.table import TableRouter

    # Own folder, not tmp_path_factory: concurrent pytest sessions of the same user prune each
    # other's /tmp/pytest-of-<user>/pytest-N folders (only the newest 3 are kept).
    root = Path(tempfile.mkdtemp(prefix="benchcoe-lmms-"))
    seed_lmms_datasets(root / "hf" / "datasets", rows=8)
    models = {"llava": build_llava(root / "llava", seed=1), "qwen": build_qwen2_5_vl(root / "qwen", seed=3),
              "text": build_causal_lm(root / "text", seed=5, hidden_size=32)}
    TableRouter.from_table(TABLE, experts=["llava", "qwen", "text"]).save(root / "router")
    TableRouter.from_table({s: ("text" if e == "text" else "llava") for s, e in TABLE.items()},
                           experts=["llava", "text"]).save(root / "router_ranks")
    experts = {
        "llava": {"model": "llava_hf", "model_args": {"pretrained": str(models["llava"]), "device_map": "cpu",
                                                      "device": "cpu", "dtype": "float32"}},
        "qwen": {"model": "qwen2_5_vl", "model_args": {"pretrained": str(models["qwen"]), "device_map": "cpu",
                                                       "device": "cpu", "max_pixels": 3136, "min_pixels": 3136}},
        "text": {"model": "hf", "modality": "text", "model_args": {"pretrained": str(models["text"]),
                                                                   "device": "cpu", "dtype": "float32"}},
    }
    base = {"router": "router", "fallback": "llava", "result_cache": False}

    def write(name: str, chosen: dict, router: str = "router") -> None:
        (root / name).write_text(yaml.safe_dump({**base, "name": name[:-5], "router": router, "experts": chosen}))

    qwen_simple = {**experts["qwen"], "model_args": {**experts["qwen"]["model_args"], "lmms_interface": "simple"}}
    llava_chat = {**experts["llava"], "model_args": {**experts["llava"]["model_args"], "lmms_interface": "chat"}}
    write("chat.yaml", {"llava": experts["llava"], "qwen": qwen_simple, "text": experts["text"]})
    write("simple.yaml", {"llava": llava_chat, "qwen": experts["qwen"], "text": experts["text"]})
    # qwen2_5_vl's own __init__ refuses several CPU processes (it asserts a multi-GPU setup): llava + text.
    # The text expert names no device here: lmms-eval passes none, and lm-eval's HF model defaults to cuda.
    text_no_device = {**experts["text"], "model_args": {k: v for k, v in experts["text"]["model_args"].items()
                                                        if k != "device"}}
    write("ranks.yaml", {"llava": experts["llava"], "text": text_no_device}, router="router_ranks")
    (root / "models.json").write_text(json.dumps({k: str(v) for k, v in models.items()}))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def env_for(workspace: Path) -> dict[str, str]:
    return harness_env({"HF_HOME": str(workspace / "hf"), "HF_DATASETS_CACHE": str(workspace / "hf" / "datasets")})


def lmms_eval(workspace: Path, out: str, model: str, model_args: str, *extra: str, launcher: list[str] | None = None,
              tasks: str = TASKS, cwd: Path | None = None, hf_home: Path | None = None) -> Path:
    command = (launcher or ["python"]) + ["-m", "lmms_eval", "--model", model, "--model_args", model_args,
                                          "--tasks", tasks, "--limit", LIMIT, "--batch_size", "1",
                                          "--gen_kwargs", f"max_new_tokens={MAX_NEW_TOKENS}",
                                          "--output_path", str(workspace / out), "--log_samples", *extra]
    env = env_for(workspace) if hf_home is None else harness_env({"HF_HOME": str(hf_home),
                                                                  "HF_DATASETS_CACHE": str(hf_home / "datasets")})
    result = run_cli(command, cwd=cwd or workspace, env=env)
    # lmms-eval logs an evaluation error and still exits 0: a run counts only if it wrote results.
    assert list((workspace / out).rglob("*_results.json")), f"{out}: no results\n{result.stderr[-4000:]}"
    return workspace / out


@pytest.fixture(scope="module")
def runs(workspace) -> dict[str, Path]:
    models = json.loads((workspace / "models.json").read_text())
    qwen_args = f"pretrained={models['qwen']},device_map=cpu,device=cpu,max_pixels=3136,min_pixels=3136"
    torchrun = ["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port())]
    return {
        "coe_chat": lmms_eval(workspace, "coe_chat", "coemodel", "config=chat.yaml"),
        "coe_simple": lmms_eval(workspace, "coe_simple", "coemodel", "config=simple.yaml", "--force_simple"),
        # chat llava_hf alone raises IndexError on ScienceQA-FULL's image-free questions (the CoE never
        # sends them to it), so it runs alone on the other tasks only.
        "llava_alone": lmms_eval(workspace, "llava_alone", "llava_hf",
                                 f"pretrained={models['llava']},device_map=cpu,device=cpu,dtype=float32",
                                 tasks=LLAVA_ALONE_TASKS),
        "qwen_alone": lmms_eval(workspace, "qwen_alone", "qwen2_5_vl", qwen_args, "--force_simple"),
        "one_rank": lmms_eval(workspace, "one_rank", "coemodel", "config=ranks.yaml"),
        "two_ranks": lmms_eval(workspace, "two_ranks", "coemodel", "config=ranks.yaml", launcher=torchrun),
    }


# -- reading lmms-eval's output --------------------------------------------------------------
def samples(folder: Path) -> dict[tuple[str, int], dict]:
    rows = {}
    for path in sorted(folder.rglob("*_samples_*.jsonl")):
        task = path.stem.split("_samples_", 1)[1]
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows[(task, row["doc_id"])] = row
    return rows


def response(row: dict) -> str:
    value = row.get("resps", row["filtered_resps"])
    while isinstance(value, list):
        value = value[0]
    return value


def results(folder: Path) -> dict:
    paths = sorted(folder.rglob("*_results.json"))
    assert paths, f"no results JSON under {folder}"
    return json.loads(paths[-1].read_text())


def routing_log(folder: Path) -> dict[tuple[str, int], dict]:
    paths = sorted(folder.rglob("routing_*.jsonl"))
    assert len(paths) == 1, f"expected one routing log under {folder}, found {paths}"
    return {(r["task"], r["doc_id"]): r for r in map(json.loads, paths[0].read_text().splitlines())}


def text_expert_answers(workspace: Path, prompts: list[str]) -> list[str]:
    """The text expert run alone through lm-eval's own HFLM, greedy, max_gen_toks = MAX_NEW_TOKENS."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    models = json.loads((workspace / "models.json").read_text())
    lm = get_model("hf").create_from_arg_string(f"pretrained={models['text']},device=cpu,dtype=float32",
                                                {"batch_size": 1})
    requests = [Instance("generate_until", {}, (p, {"max_gen_toks": MAX_NEW_TOKENS, "do_sample": False,
                                                    "until": []}), 0) for p in prompts]
    return lm.generate_until(requests)


# -- assertions ------------------------------------------------------------------------------
@pytest.mark.parametrize("run", ["coe_chat", "coe_simple"])
def test_all_four_tasks_answered_and_routed_once(runs, run) -> None:
    rows, log = samples(runs[run]), routing_log(runs[run])
    assert {task for task, _ in rows} == set(RUN_TASKS)
    assert set(rows) == set(log), "every answered document has exactly one routing row"
    coe = results(runs[run])["coe"]
    assert coe["kind"] == ("chat" if run == "coe_chat" else "simple")
    counted = {task: sum(c.values()) for task, c in coe["documents_per_expert"].items()}
    assert counted == {task: sum(1 for t, _ in rows if t == task) for task in RUN_TASKS}
    assert set(coe["expert_loads"].values()) == {1}, "each expert loads once per run"
    routed = Counter(row["expert"] for row in log.values())
    assert {e: row["documents"] for e, row in coe["spend"].items() if row["documents"]} == dict(routed)
    assert all(coe["spend"][e]["requests"] >= n and coe["spend"][e]["wall_seconds"] > 0 for e, n in routed.items())
    for (task, doc_id), row in log.items():
        assert coe["documents_per_expert"][task][row["expert"]] >= 1
    results_folders = {p.parent for p in runs[run].rglob("*_results.json")}
    assert {f.name for f in results_folders} == {"chat" if run == "coe_chat" else "simple"}, "named after the CoE"
    record = coe["reproducibility"]
    assert record["harness"] == "lmms_eval" and record["versions"]["lmms_eval"]
    assert (next(iter(results_folders)) / record["router"]["copy"] / "router.json").is_file()
    assert all(e["revision"].startswith("sha256:") for e in record["experts"].values())


def test_rerun_reproduces_every_answer(runs, workspace, tmp_path) -> None:
    """``benchcoe rerun`` rebuilds config + router from the results folder; the experts answer again."""
    output = tmp_path / "rerun"
    run_cli(["benchcoe", "rerun", str(runs["coe_simple"]), "--output", str(output)], cwd=tmp_path,
            env=env_for(workspace))
    original, again = samples(runs["coe_simple"]), samples(output)
    assert set(again) == set(original) and original
    for key, row in original.items():
        assert response(again[key]) == response(row), key
    assert results(output)["coe"]["config"]["result_cache"] is False


@pytest.mark.parametrize("run", ["coe_chat", "coe_simple"])
def test_router_table_followed_and_image_free_docs_reach_the_text_expert(runs, run) -> None:
    log = routing_log(runs[run])
    image_free = 0
    for key, row in log.items():
        expected = TABLE.get(row["subject"], "llava")
        if row["expert"] != expected:
            assert row["expert"] == "text" and "image-free" in row["reason"], (key, row)
            image_free += 1
    assert image_free > 0, "ScienceQA-FULL has image-free questions routed to a vision expert by the table"
    assert all(log[k]["expert"] == "text" for k in log if "image-free" in log[k]["reason"])


@pytest.mark.parametrize("run", ["coe_chat", "coe_simple"])
def test_each_document_equals_its_expert_alone(runs, workspace, run) -> None:
    coe, log = samples(runs[run]), routing_log(runs[run])
    alone = {"llava": samples(runs["llava_alone"]), "qwen": samples(runs["qwen_alone"])}
    text_keys = [k for k in coe if log[k]["expert"] == "text"]
    assert text_keys and any(log[k]["expert"] == "llava" for k in coe) and any(log[k]["expert"] == "qwen" for k in coe)
    text_answers = dict(zip(text_keys, text_expert_answers(workspace, [coe[k]["input"] for k in text_keys])))
    compared = 0
    for key, row in coe.items():
        expert = log[key]["expert"]
        if expert == "text":
            assert response(row) == text_answers[key], key
        elif run == "coe_simple" and expert == "llava" and key[0] == "mmmu_val":
            # simple -> chat conversion sends images + the simple prompt; MMMU's own chat messages
            # interleave images into the question instead, so only the answer's presence is checked.
            assert isinstance(response(row), str)
            continue
        elif key not in alone[expert]:
            assert expert == "llava" and key[0] == "scienceqa", (key, expert)  # see LLAVA_ALONE_TASKS
            continue
        else:
            assert response(row) == response(alone[expert][key]), (key, expert)
        compared += 1
    assert compared >= len(coe) - 6


def test_two_processes_match_one_process(runs) -> None:
    one, two = samples(runs["one_rank"]), samples(runs["two_ranks"])
    assert set(one) == set(two) and len(one) == 4 * len(RUN_TASKS)
    assert {k: response(r) for k, r in one.items()} == {k: response(r) for k, r in two.items()}
    log_one, log_two = routing_log(runs["one_rank"]), routing_log(runs["two_ranks"])
    assert {k: r["expert"] for k, r in log_one.items()} == {k: r["expert"] for k, r in log_two.items()}
    coe_one, coe_two = results(runs["one_rank"])["coe"], results(runs["two_ranks"])["coe"]
    assert coe_one["documents_per_expert"] == coe_two["documents_per_expert"]
    # the harness deals documents by index (rank r gets doc_id % 2 == r); with rank_loading "needed" (the
    # default) each rank loads once exactly the experts its own documents were routed to
    needed = [{row["expert"] for (_, doc_id), row in log_two.items() if doc_id % 2 == rank} for rank in (0, 1)]
    assert coe_two["expert_loads_per_rank"] == [{expert: 1 for expert in sorted(n)} for n in needed], needed
    # rank 0 writes the record, and its figures cover both ranks: the same requests and answers as one process
    per_rank = coe_two["expert_loads_per_rank"]
    assert coe_two["expert_loads"] == dict(sum((Counter(loads) for loads in per_rank), Counter()))
    for field in ("requests", "generated_tokens", "documents"):
        assert {e: r[field] for e, r in coe_two["spend"].items()} == {e: r[field] for e, r in coe_one["spend"].items()}
    assert all(row["wall_seconds"] > 0 for row in coe_two["spend"].values() if row["requests"])


def test_rerun_takes_every_answer_from_the_result_cache(workspace, tmp_path) -> None:
    """The chat llava_hf expert returns lmms-eval GenerationResult objects, which its result store must keep
    (as their text): a second run of the same command loads no expert and gives the same answers."""
    model_args = f"config=ranks.yaml,result_cache={tmp_path / 'store'}"
    first, again = (lmms_eval(workspace, str(tmp_path / name), "coemodel", model_args, tasks="mmstar")
                    for name in ("first", "again"))
    routed = Counter(row["expert"] for row in routing_log(again).values())
    assert routed["llava"] > 0, "the table sends some mmstar documents to the vision expert"
    coe = results(again)["coe"]
    assert coe["expert_loads"] == {}, "every answer came from the result cache, so no expert loads"
    assert coe["answers_from_result_cache"] == dict(routed)
    assert {expert: row["requests"] for expert, row in coe["spend"].items()} == {expert: 0 for expert in routed}
    assert {k: response(r) for k, r in samples(again).items()} == {k: response(r) for k, r in samples(first).items()}
    assert results(first)["coe"]["spend"]["llava"]["generated_tokens"] > 0, "the GenerationResult texts are counted"

    # The same questions under the same task name, other images (as a dataset copy with placeholder
    # images would be): the vision expert's stored answers are about the old images, so none is served.
    import random

    from PIL import Image

    from benchcoe_plugins.offline.lmms_datasets import OFFLINE_DATASETS, write_cached_dataset

    rows = OFFLINE_DATASETS["mmstar"].rows(8, random.Random("0:mmstar"))  # the workspace's seeded rows
    for row in rows:
        row["image"] = Image.new("RGB", (32, 32), (200, 30, 30))
    write_cached_dataset(OFFLINE_DATASETS["mmstar"], rows, tmp_path / "hf_other" / "datasets")
    other = lmms_eval(workspace, str(tmp_path / "other"), "coemodel", model_args, tasks="mmstar",
                      hf_home=tmp_path / "hf_other")
    coe = results(other)["coe"]
    assert coe["answers_from_result_cache"].get("llava", 0) == 0 and coe["expert_loads"].get("llava") == 1, coe
    assert coe["spend"]["llava"]["requests"] == routed["llava"]


def test_replay_of_a_run_log_reproduces_its_answers(runs, workspace) -> None:
    """lmms-eval's `coe_replay` answers every document from another run's --log_samples JSONL."""
    replayed = lmms_eval(workspace, "qwen_replayed", "coe_replay", f"log={runs['qwen_alone']}")
    original, again = samples(runs["qwen_alone"]), samples(replayed)
    assert again.keys() == original.keys() and len(again) > 0
    for key, row in original.items():
        assert response(again[key]) == response(row), key


def test_agentic_requests_are_left_to_the_evaluator(workspace) -> None:
    """lmms-eval serves ``generate_until_agentic`` (stock ``vending_bench2``, data shipped with lmms-eval)
    by calling ``generate_until`` round by round; the coemodel must answer those rounds and keep the
    agentic requests out of its own view of the evaluator's pending requests."""
    import lmms_eval as harness

    # the task's data_files path is relative to the working folder (lmms-eval's repository root)
    cwd = workspace / "agentic_cwd"
    data = Path("lmms_eval") / "tasks" / "vending_bench2" / "data" / "vending_bench2.jsonl"
    (cwd / data).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(harness.__file__).parent.parent / data, cwd / data)
    out = lmms_eval(workspace, "agentic", "coemodel", f"config={workspace / 'chat.yaml'}",
                    tasks="mmstar,vending_bench2", cwd=cwd)
    rows, log = samples(out), routing_log(out)
    assert {task for task, _ in rows} == {"mmstar", "vending_bench2"}
    vending = [row for (task, _), row in rows.items() if task == "vending_bench2"]
    assert vending and all(isinstance(response(row), str) and response(row) for row in vending)
    assert {key for key in log if key[0] == "mmstar"} == {key for key in rows if key[0] == "mmstar"}
    assert "vending_bench2" in results(out)["results"]
