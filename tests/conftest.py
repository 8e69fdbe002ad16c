"""Shared fixtures: tiny local experts, offline environment, CLI runner."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# The suite neither reads nor writes the user's caches (the Hugging Face cache, benchcoe's weights-hash
# cache): set before anything imports datasets / transformers; a test that needs its own sets HF_HOME.
_CACHES = Path(tempfile.mkdtemp(prefix="benchcoe-test-caches-"))
atexit.register(shutil.rmtree, _CACHES, ignore_errors=True)
os.environ.pop("HF_DATASETS_CACHE", None)
os.environ.update({"HF_HOME": str(_CACHES / "hf"), "BENCHCOE_CACHE": str(_CACHES / "benchcoe")})

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Fuzz tests: the same examples on every run (derandomized, no example database) unless
# HYPOTHESIS_PROFILE=campaign, a long randomized search (BENCHCOE_FUZZ_EXAMPLES examples per test).
settings.register_profile("ci", max_examples=150, derandomize=True, database=None, deadline=None)
settings.register_profile("campaign", max_examples=int(os.environ.get("BENCHCOE_FUZZ_EXAMPLES", "5000")),
                          derandomize=False, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}


def harness_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **OFFLINE_ENV, **(extra or {})}
    return env


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
            timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs a console script of this environment (lm_eval, benchcoe, python -m ...)."""
    command = [str(BIN / args[0]) if (BIN / args[0]).exists() else args[0], *args[1:]]
    result = subprocess.run(command, cwd=cwd, env=env or harness_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n--- stderr ---\n{result.stderr[-6000:]}")
    return result


def mmlu_pro_questions() -> list[dict]:
    from benchcoe_plugins.training.records import read_jsonl

    return list(read_jsonl(SHARED_DATA / "mmlu_pro" / "questions.jsonl.gz"))


def write_mmlu_pro_records(root: Path, rows: list[dict], experts: list[str]) -> Path:
    """A records folder at ``root``: the question ``rows`` and those experts' real records of them."""
    import gzip

    from benchcoe_plugins.training.records import read_jsonl

    ids = {row["question_id"] for row in rows}
    with gzip.open(root / "questions.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    (root / "records").mkdir()
    for expert in experts:
        source = SHARED_DATA / "mmlu_pro" / "records" / f"{expert}.jsonl.gz"
        with gzip.open(root / "records" / f"{expert}.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in read_jsonl(source) if r["question_id"] in ids)
    return root


def seeded_harness_env(home: Path) -> dict[str, str]:
    """The harness environment with ``home`` as HF_HOME, its datasets cache seeded by ``benchcoe offline-data``."""
    env = harness_env({"HF_HOME": str(home)})
    run_cli(["benchcoe", "offline-data"], cwd=home, env=env)
    return env


def free_port() -> int:
    """A free local TCP port for torchrun's rendezvous (parallel runs must not share 29500)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_samples(output_dir: Path) -> dict[tuple[str, int], dict]:
    """(task, doc_id) -> sample row of every samples_*.jsonl under output_dir."""
    rows = {}
    for path in sorted(output_dir.rglob("samples_*.jsonl")):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows[(task, row["doc_id"])] = row
    return rows


def read_results(output_dir: Path) -> dict:
    paths = sorted(output_dir.rglob("results_*.json"))
    assert paths, f"no results_*.json under {output_dir}"
    return json.loads(paths[-1].read_text())


@pytest.fixture(scope="session")
def tiny_experts(tmp_path_factory) -> dict[str, Path]:
    """Two tiny causal LMs that differ (seed, size, chat template)."""
    from tiny_models import build_causal_lm

    root = tmp_path_factory.mktemp("experts")
    return {
        "alpha": build_causal_lm(root / "alpha", seed=11, hidden_size=32, chat_template="plain"),
        "beta": build_causal_lm(root / "beta", seed=22, hidden_size=48, chat_template="tagged"),
    }


from coe_workspace import runs, workspace  # noqa: E402,F401  (session fixtures shared by lm-eval tests)
