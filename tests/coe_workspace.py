"""A small lm-eval CoE workspace shared by the lm-eval tests: two toy tasks (generation and
multiple choice) over local data, a table router, a config, and CLI runs of the CoE and of
each expert alone (the parity reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli
from benchcoe_plugins.routers.table import TableRouter

SUBJECTS = ["biology", "law", "math", "history"]
TABLE = {"biology": "alpha", "law": "beta", "math": "beta"}  # history: not in the table -> fallback


def write_toy_tasks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"question": f"What is {i} plus {i % 3}?", "subject": SUBJECTS[i % 4],
         "choices": [str(i), str(i + i % 3), "ten"], "answer": 1}
        for i in range(8)
    ]
    data = folder / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("toy_gen.yaml", "toy_mc.yaml"):
        text = (REPO / "tests" / "data" / "toy_tasks" / name).read_text().replace("DATA_FILE", str(data))
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="session")
def workspace(tiny_experts, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coe")
    write_toy_tasks(root / "tasks")
    TableRouter.from_table(TABLE, experts=["alpha", "beta"]).save(root / "router")
    config = {
        "name": "toy-coe",
        "router": "router",
        "fallback": "alpha",
        "experts": {
            "alpha": {"model": "hf", "model_args": {"pretrained": str(tiny_experts["alpha"]), "batch_size": 1}},
            "beta": {"model": "hf", "model_args": {"pretrained": str(tiny_experts["beta"])}},
        },
        "question_field": {"toy_*": "question"},
        "result_cache": str(root / "result_cache"),
    }
    (root / "coe.yaml").write_text(yaml.safe_dump(config))
    return root


def lm_eval(workspace: Path, model: str, model_args: str, out: str, *extra: str) -> Path:
    run_cli(["lm_eval", "--model", model, "--model_args", model_args, "--tasks", "toy_gen,toy_mc",
             "--include_path", str(workspace / "tasks"), "--batch_size", "1", "--output_path",
             str(workspace / out), "--log_samples", *extra], cwd=workspace)
    return workspace / out


@pytest.fixture(scope="session")
def runs(workspace, tiny_experts) -> dict[str, Path]:
    """One CoE run and one run of each expert alone, plain and with --apply_chat_template."""
    outputs = {"coe": lm_eval(workspace, "coe", "config=coe.yaml", "out_coe")}
    for name, path in tiny_experts.items():
        outputs[name] = lm_eval(workspace, "hf", f"pretrained={path}", f"out_{name}")
    return outputs


def expected_expert(doc: dict) -> str:
    return TABLE.get(doc["subject"], "alpha")


