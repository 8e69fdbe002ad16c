"""Build the offline MMMU-Pro copy in this folder from ../shared/data/mmmu_pro/.

    python tasks/mmmu_pro/build.py [--data /work/shared/data/mmmu_pro]

Writes (see README.md here for the choices):

- ``test.parquet``: the 1,730 questions of MMMU-Pro "standard (10 options)" with the text
  columns of the Hugging Face dataset MMMU/MMMU_Pro (``options`` and ``img_type`` as the
  dataset's Python-list strings, ``subject`` with underscores as in the dataset's ids). No
  images: ``benchcoe offline-data`` writes a placeholder image per ``<image N>`` when it seeds.
- ``replay/<model>.jsonl.gz``: the five VLMs' records (``id``, ``pred``, ``correct``,
  ``response``), for the replay experts of ``benchcoe demo``.

Source: MMMU-Benchmark/MMMU (Apache-2.0), ``mmmu-pro/temp_output/`` at commit e3be682.
Deterministic: running it twice gives identical files.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.offline.build_arguments import parse_build_arguments, run_build
from benchcoe_plugins.offline.mmmu_pro import COLUMNS, VLM_POOL

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "mmmu_pro"  # ../shared beside the checkout


def dataset_row(question: dict) -> dict:
    """One row in MMMU/MMMU_Pro's text columns."""
    return {
        "id": question["id"],
        "question": question["question"],
        "options": str(list(question["options"])),
        "explanation": "",
        "img_type": str(list(question.get("img_type") or [])),
        "answer": question["answer"],
        "topic_difficulty": question.get("topic_difficulty") or "",
        "subject": question["subject"].replace(" ", "_"),
    }


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    args = parse_build_arguments(__doc__.splitlines()[0], DEFAULT_DATA, HERE)

    questions = list(read_jsonl(args.data / "questions.jsonl.gz"))
    rows = [dataset_row(q) for q in questions]  # the records' order, which the harness's doc_ids follow
    args.out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in COLUMNS]))
    pq.write_table(table, args.out / "test.parquet", compression="zstd", compression_level=19)

    replay = args.out / "replay"
    replay.mkdir(exist_ok=True)
    answers = {q["id"]: q["answer"] for q in questions}
    for model in VLM_POOL:
        records = sorted(read_jsonl(args.data / "records" / f"{model}.jsonl.gz"), key=lambda r: r["id"])
        with gzip.GzipFile(replay / f"{model}.jsonl.gz", "wb", mtime=0) as raw:
            for row in records:
                line = {"id": row["id"], "pred": row["pred"],
                        "correct": row["pred"] is not None and row["pred"] == answers[row["id"]],
                        "response": row["response"]}
                raw.write((json.dumps(line) + "\n").encode())
    manifest = {
        "source": "MMMU-Benchmark/MMMU (Apache-2.0), mmmu-pro/temp_output/ at commit e3be682",
        "dataset": "MMMU/MMMU_Pro, config 'standard (10 options)', split test",
        "test_rows": len(rows),
        "images": "none shipped; one placeholder image per <image N> is written when the cache is seeded",
        "replay_experts": VLM_POOL,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"test {len(rows)} rows, replay {len(VLM_POOL)} experts -> {args.out}")


if __name__ == "__main__":
    run_build(main)
