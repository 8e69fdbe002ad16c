"""Shared set-up for the benchmarks: tiny local causal LMs, a toy task, a table router."""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_models import build_causal_lm  # noqa: E402

SUBJECTS = ["biology", "law", "math", "history", "physics", "economics"]


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


def build_experts(root: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, Path]:
    """name -> (hidden_size, layers)."""
    return {name: build_causal_lm(root / name, seed=i, hidden_size=h, layers=layers)
            for i, (name, (h, layers)) in enumerate(sizes.items())}
