"""A small lm-eval CoE workspace shared by the lm-eval tests: two toy tasks (generation and
multiple choice) over local data, a table router, a config, and CLI runs of the CoE and of
each expert alone (the parity reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, harness_env, run_cli
from benchcoe_plugins.core.documents import subject_of
from benchcoe_plugins.routers.table import TableRouter

SUBJECTS = ["biology", "law", "math", "history"]
# toy subjects and MMLU-Pro categories; history and the rest: not in the table -> fallback alpha
TABLE = {"biology": "alpha", "law": "beta", "math": "beta", "business": "beta"}
# generation and multiple choice, local toy tasks and the stock MMLU-Pro tasks (offline copy)
TASKS = "toy_gen,toy_mc,mmlu_pro_biology,mmlu_pro_law,leaderboard_mmlu_pro"
LIMIT = 3


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
    from benchcoe_plugins.offline.seed import seed_mmlu_pro_cache

    root = tmp_path_factory.mktemp("coe")
    write_toy_tasks(root / "tasks")
    seed_mmlu_pro_cache(root / "hf" / "datasets")
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


def workspace_env(workspace: Path) -> dict[str, str]:
    return harness_env({"HF_HOME": str(workspace / "hf")})


def lm_eval_command(workspace: Path, model: str, model_args: str, out: str, *extra: str, tasks: str = TASKS,
                    launcher: tuple[str, ...] = ()) -> list[str]:
    """The real lm_eval CLI on the workspace: short generations, LIMIT documents per task."""
    command = [*launcher, "-m", "lm_eval"] if launcher else ["lm_eval"]
    return [*command, "--model", model, "--model_args", model_args, "--tasks", tasks, "--limit", str(LIMIT),
            "--gen_kwargs", "max_gen_toks=8", "--include_path", str(workspace / "tasks"), "--batch_size", "1",
            "--output_path", str(workspace / out), "--log_samples", *extra]


def lm_eval(workspace: Path, model: str, model_args: str, out: str, *extra: str, tasks: str = TASKS,
            launcher: tuple[str, ...] = ()) -> Path:
    run_cli(lm_eval_command(workspace, model, model_args, out, *extra, tasks=tasks, launcher=launcher),
            cwd=workspace, env=workspace_env(workspace))
    return workspace / out


@pytest.fixture(scope="session")
def runs(workspace, tiny_experts) -> dict[str, Path]:
    """One CoE run and one run of each expert alone, plain and with --apply_chat_template."""
    outputs = {"coe": lm_eval(workspace, "coe", "config=coe.yaml", "out_coe")}
    for name, path in tiny_experts.items():
        outputs[name] = lm_eval(workspace, "hf", f"pretrained={path}", f"out_{name}")
    return outputs


def expected_expert(task: str, doc: dict) -> str:
    return TABLE.get(subject_of(task, doc), "alpha")




def lm_eval_refuses(workspace: Path, config: dict, name: str) -> str:
    """Runs the coe on ``config`` (written as ``name``), which must fail before any model loads; its stderr."""
    (workspace / name).write_text(yaml.safe_dump(config))
    result = run_cli(["lm_eval", "--model", "coe", "--model_args", f"config={name}", "--tasks", "toy_gen",
                      "--include_path", str(workspace / "tasks")], cwd=workspace, env=workspace_env(workspace),
                     check=False)
    assert result.returncode != 0
    assert "Loading weights" not in result.stderr + result.stdout
    return result.stderr
