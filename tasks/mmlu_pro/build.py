"""Build the offline MMLU-Pro copy in this folder from ../shared/data/mmlu_pro/.

    python tasks/mmlu_pro/build.py [--data /work/shared/data/mmlu_pro]

Writes (see README.md here for the choices):

- ``test.parquet``: the MMLU-Pro test questions minus the held-out few-shot examples,
  with the columns of the Hugging Face dataset TIGER-Lab/MMLU-Pro.
- ``validation.parquet``: 5 few-shot examples per subject (70 rows), held out of the
  test split, with ``cot_content`` taken from Meta-Llama-3.1-8B-Instruct's recorded
  correct output for that question.
- ``replay/<expert>.jsonl.gz``: the extracted answer letter of each expert of the
  embedded 5-expert pool (``question_id``, ``pred``, ``correct``), for ``benchcoe demo``.

Source: TIGER-AI-Lab/MMLU-Pro (Apache-2.0), questions and ``eval_results/``.
Deterministic: running it twice gives identical files.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.offline.build_arguments import parse_build_arguments, run_build
from benchcoe_plugins.demo import POOL  # the replay experts the demo runs

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "mmlu_pro"  # ../shared beside the checkout
FEWSHOT_MODEL = "Meta-Llama-3_1-8B-Instruct"
FEWSHOT_PER_SUBJECT = 5
MAX_COT_CHARS = 1000
COLUMNS = ["question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src"]
ANSWER = re.compile(r"answer is \(?([A-J])\)?\.?")


def cot_from_output(text: str, answer: str) -> str | None:
    """``"A: Let's think step by step. ... The answer is (X)."`` from a correct output, or None."""
    text = text.strip()
    match = ANSWER.search(text)
    if not match or match.group(1) != answer or "Question:" in text:
        return None
    body = text[: match.end()].strip()
    if not body.endswith("."):
        body += "."
    if len(body) > MAX_COT_CHARS or len(body) < 40:
        return None
    return "A: Let's think step by step. " + body


def choose_fewshot(questions: list[dict], records: dict[int, dict]) -> dict[int, str]:
    """question_id -> cot_content: per subject, the first 5 questions (by question_id) that the
    few-shot model answered correctly with a short, well-formed chain of thought."""
    chosen: dict[int, str] = {}
    per_subject: dict[str, int] = defaultdict(int)
    for question in sorted(questions, key=lambda q: q["question_id"]):
        subject = question["category"]
        record = records.get(question["question_id"])
        if per_subject[subject] >= FEWSHOT_PER_SUBJECT or not record or not record.get("correct"):
            continue
        cot = cot_from_output(record.get("generated_text") or "", question["answer"])
        if cot is not None:
            chosen[question["question_id"]] = cot
            per_subject[subject] += 1
    short = {s: n for s, n in per_subject.items() if n < FEWSHOT_PER_SUBJECT}
    if short:
        raise SystemExit(f"too few few-shot candidates for {short}")
    return chosen


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("question_id", pa.int64()), ("question", pa.string()), ("options", pa.list_(pa.string())),
        ("answer", pa.string()), ("answer_index", pa.int64()), ("cot_content", pa.string()),
        ("category", pa.string()), ("src", pa.string()),
    ])
    table = pa.Table.from_pylist([{c: row[c] for c in COLUMNS} for row in rows], schema=schema)
    pq.write_table(table, path, compression="zstd", compression_level=19)


def main() -> None:
    args = parse_build_arguments(__doc__.splitlines()[0], DEFAULT_DATA, HERE)

    questions = list(read_jsonl(args.data / "questions.jsonl.gz"))
    records = {r["question_id"]: r for r in read_jsonl(args.data / "records" / f"{FEWSHOT_MODEL}.jsonl.gz")}
    fewshot = choose_fewshot(questions, records)
    order = sorted({q["category"] for q in questions})
    validation = sorted((dict(q, cot_content=fewshot[q["question_id"]]) for q in questions if q["question_id"] in fewshot),
                        key=lambda q: (order.index(q["category"]), q["question_id"]))
    test = [dict(q, cot_content="") for q in questions if q["question_id"] not in fewshot]
    args.out.mkdir(parents=True, exist_ok=True)
    write_parquet(test, args.out / "test.parquet")
    write_parquet(validation, args.out / "validation.parquet")

    replay = args.out / "replay"
    replay.mkdir(exist_ok=True)
    answers = {q["question_id"]: q["answer"] for q in questions}
    for model in POOL:
        rows = read_jsonl(args.data / "records" / f"{model}.jsonl.gz")
        with gzip.GzipFile(replay / f"{model}.jsonl.gz", "wb", mtime=0) as raw:
            for row in sorted(rows, key=lambda r: r["question_id"]):
                line = {"question_id": row["question_id"], "pred": row["pred"],
                        "correct": row["pred"] is not None and row["pred"] == answers[row["question_id"]]}
                raw.write((json.dumps(line) + "\n").encode())
    manifest = {
        "source": "TIGER-AI-Lab/MMLU-Pro (Apache-2.0): questions + eval_results/",
        "test_rows": len(test),
        "validation_rows": len(validation),
        "held_out_question_ids": sorted(fewshot),
        "fewshot_cot_from": FEWSHOT_MODEL,
        "replay_experts": POOL,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"test {len(test)} rows, validation {len(validation)} rows, replay {len(POOL)} experts -> {args.out}")


if __name__ == "__main__":
    run_build(main)
