"""A ``python -m lmms_eval --model coemodel`` run of an MMMU-Pro subject router over other
tasks (transfer), offline: the synthetic copies of mmmu_val, mmstar and ScienceQA
(``offline/lmms_datasets.py``), one tiny LLaVA answering for every expert the router names,
and a tiny text model for image-free documents. Shared by the transfer test and
``benchmarks/mmmu_pro_transfer.py``.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import yaml

TRANSFER_TASKS = "mmmu_val,mmstar,scienceqa_img,scienceqa_full"
# mmmu_val documents carry an MMMU subject (in their id): route by it; the others by the predicted subject
SUBJECT_SOURCE = {"mmmu_val": "field", "mmstar": "predicted", "scienceqa*": "predicted"}


def transfer_workspace(root: Path, router: Path, rows: int) -> Path:
    """Seeds ``rows`` synthetic rows per dataset under ``root/hf`` and writes ``root/coe.yaml``."""
    from tiny_models import build_causal_lm
    from tiny_vlms import build_llava

    from benchcoe_plugins.offline.lmms_datasets import seed_lmms_datasets

    seed_lmms_datasets(root / "hf" / "datasets", rows=rows)
    llava = build_llava(root / "llava", seed=1)
    text = build_causal_lm(root / "text", seed=5, hidden_size=32)
    names = json.loads((Path(router) / "router.json").read_text())["experts"]
    vision = {"model": "llava_hf", "model_args": {"pretrained": str(llava), "device_map": "cpu", "device": "cpu",
                                                  "dtype": "float32"}}
    experts = {name: vision for name in names}
    experts["text"] = {"model": "hf", "modality": "text",
                       "model_args": {"pretrained": str(text), "device": "cpu", "dtype": "float32"}}
    config = {"name": "mmmu-pro-transfer", "router": str(router), "fallback": names[0], "experts": experts,
              "subject_source": SUBJECT_SOURCE, "result_cache": False}
    (root / "coe.yaml").write_text(yaml.safe_dump(config))
    return root / "coe.yaml"


def run_transfer(root: Path, limit: int, tasks: str = TRANSFER_TASKS) -> Path:
    """The real lmms_eval CLI over ``tasks``; returns its output folder."""
    from conftest import harness_env, run_cli

    out = root / "out"
    env = harness_env({"HF_HOME": str(root / "hf"), "HF_DATASETS_CACHE": str(root / "hf" / "datasets")})
    result = run_cli([sys.executable, "-m", "lmms_eval", "--model", "coemodel", "--model_args", "config=coe.yaml",
                      "--tasks", tasks, "--limit", str(limit), "--batch_size", "1",
                      "--gen_kwargs", "max_new_tokens=2", "--output_path", str(out), "--log_samples"],
                     cwd=root, env=env)
    # lmms-eval logs an evaluation error and still exits 0: a run counts only if it wrote results.
    assert list(out.rglob("*_results.json")), f"no results\n{result.stderr[-4000:]}"
    return out


def routing_rows(out: Path) -> list[dict]:
    paths = sorted(out.rglob("routing_*.jsonl"))
    assert len(paths) == 1, f"expected one routing log under {out}, found {paths}"
    return [json.loads(line) for line in paths[0].read_text().splitlines()]


def subject_distribution(rows: list[dict]) -> dict[str, Counter]:
    """Per task, how many documents the router placed in each subject."""
    out: dict[str, Counter] = {}
    for row in rows:
        out.setdefault(row["task"], Counter())[row["subject"] or "(none)"] += 1
    return out


def offline_rows(task: str, rows: int) -> list[dict]:
    """The synthetic rows ``seed_lmms_datasets(rows=rows)`` wrote for ``task`` (same seed, same order)."""
    from benchcoe_plugins.offline.lmms_datasets import OFFLINE_DATASETS

    return OFFLINE_DATASETS[task].rows(rows, random.Random(f"0:{task}"))
