"""Shared set-up for the benchmarks: tiny local causal LMs, a toy task, a table router."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_models import build_causal_lm  # noqa: E402

SUBJECTS = ["biology", "law", "math", "history", "physics", "economics"]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# Runs the lm_eval CLI inside this wrapper process (python -m lm_eval, in-process) and writes to
# argv[1]: the process wall (lm_eval's imports to its exit); the evaluation wall, i.e. model creation
# plus lm_eval's evaluate() (loading, inference, freeing; not imports, nor task building, which
# every run pays again); peak RSS; and, where the run used CUDA, torch's peak GPU memory. No
# nvidia-smi: torch's counters see this process, which is the whole run.
MEASURE = """
import json, resource, runpy, sys, time
out, sys.argv = sys.argv[1], ["lm_eval", *sys.argv[2:]]
start = time.perf_counter()
import lm_eval.api.registry as registry, lm_eval.evaluator as evaluator
spans, active = {"model_s": 0.0, "evaluate_s": 0.0}, [False]
def timed(function, key):
    def run(*args, **kwargs):
        if active[0]:  # the CoE creates its experts inside evaluate(): count that once
            return function(*args, **kwargs)
        active[0], start = True, time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spans[key] += time.perf_counter() - start
            active[0] = False
    return run
class TimedModel:
    def __init__(self, cls):
        self.cls = cls
    def __getattr__(self, name):
        value = getattr(self.cls, name)
        return timed(value, "model_s") if name.startswith("create_from_arg") else value
real_get_model = registry.get_model
registry.get_model = lambda name: TimedModel(real_get_model(name))
evaluator.evaluate = timed(evaluator.evaluate, "evaluate_s")
try:
    runpy.run_module("lm_eval", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    if exit.code not in (None, 0):
        raise
wall = time.perf_counter() - start
torch = sys.modules.get("torch")
cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
json.dump({"wall_s": wall, "evaluation_s": spans["model_s"] + spans["evaluate_s"],
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
           "cuda_max_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if cuda else None}, open(out, "w"))
"""


def scratch_folder(prefix: str) -> Path:
    """A temporary folder removed when the benchmark exits (the tiny experts weigh up to ~1 GB)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def write_task(folder: Path, n_docs: int, max_gen_toks: int = 16) -> Path:
    """A generate_until task ``bench_gen`` over ``n_docs`` local questions."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"Question {i}: what is {i} times {i % 7} in {SUBJECTS[i % 6]}?",
             "subject": SUBJECTS[i % len(SUBJECTS)], "answer": str(i * (i % 7))} for i in range(n_docs)]
    data = folder / "bench.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "bench_gen.yaml").write_text(
        "task: bench_gen\ndataset_path: json\ndataset_kwargs:\n  data_files: " + str(data) + "\n"
        "test_split: train\noutput_type: generate_until\ndoc_to_text: \"{{question}}\\nAnswer:\"\n"
        "doc_to_target: \"{{answer}}\"\ngeneration_kwargs:\n  until: [\"\\n\"]\n"
        f"  max_gen_toks: {max_gen_toks}\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n")
    return folder


def measure_lm_eval(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict:
    """Process and evaluation walls, peak RSS and peak CUDA memory of one lm_eval run (see MEASURE)."""
    out = Path(tempfile.mkstemp(prefix="benchcoe-measure-", suffix=".json")[1])
    try:
        run = subprocess.run([sys.executable, "-c", MEASURE, str(out), *args], cwd=cwd, text=True,
                             env={**os.environ, **OFFLINE_ENV, **(env or {})},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if run.returncode != 0:
            raise SystemExit(f"lm_eval {' '.join(args)} exited {run.returncode}:\n{run.stderr[-4000:]}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def write_coe_config(root: Path, experts: dict[str, Path], table: dict[str, str], model_args: dict | None = None,
                     **settings) -> Path:
    """A table router (subject -> expert) and ``root/coe.yaml`` of ``hf`` experts, the first one the fallback."""
    import yaml

    from benchcoe_plugins.routers.table import TableRouter

    names = list(experts)
    TableRouter.from_table(table, experts=names).save(root / "router")
    config = {"router": str(root / "router"), "fallback": names[0], "result_cache": False, **settings,
              "experts": {n: {"model": "hf", "model_args": {"pretrained": str(p), **(model_args or {})}}
                          for n, p in experts.items()}}
    (root / "coe.yaml").write_text(yaml.safe_dump(config))
    return root / "coe.yaml"


def round_robin(subjects: list[str], names: list[str]) -> dict[str, str]:
    return {s: names[i % len(names)] for i, s in enumerate(subjects)}


def build_experts(root: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, Path]:
    """name -> (hidden_size, layers)."""
    return {name: build_causal_lm(root / name, seed=i, hidden_size=h, layers=layers)
            for i, (name, (h, layers)) in enumerate(sizes.items())}
