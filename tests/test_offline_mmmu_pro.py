"""The shipped MMMU-Pro copy (``tasks/mmmu_pro``) against the shared records it is built from,
and the datasets-cache folder ``benchcoe offline-data`` seeds from it."""

from __future__ import annotations

import ast
import gzip
import json
import re

import pytest
from conftest import REPO, SHARED_DATA

from benchcoe_plugins.offline.mmmu_pro import VLM_POOL, seed_mmmu_pro_cache

TASKS = REPO / "tasks" / "mmmu_pro"
SOURCE = SHARED_DATA / "mmmu_pro"


def read_gz(path) -> list[dict]:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle]


def shipped_rows() -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(TASKS / "test.parquet").to_pylist()


@pytest.mark.skipif(not SOURCE.is_dir(), reason="../shared/data/mmmu_pro is not here")
def test_copy_equals_the_source_questions_and_records() -> None:
    source = read_gz(SOURCE / "questions.jsonl.gz")
    rows = shipped_rows()
    assert [r["id"] for r in rows] == [q["id"] for q in source] and len(rows) == 1730
    for row, question in zip(rows, source):
        assert ast.literal_eval(row["options"]) == question["options"]
        assert (row["question"], row["answer"]) == (question["question"], question["answer"])
        assert row["subject"] == question["subject"].replace(" ", "_")
    for expert in VLM_POOL:
        shipped = {r["id"]: r for r in read_gz(TASKS / "replay" / f"{expert}.jsonl.gz")}
        for record in read_gz(SOURCE / "records" / f"{expert}.jsonl.gz"):
            assert shipped[record["id"]] == record, (expert, record["id"])


def test_seeded_cache_has_a_placeholder_image_per_image_token(tmp_path) -> None:
    import datasets
    from lmms_eval.tasks.mmmu_pro.utils import mmmu_pro_doc_to_text, mmmu_pro_doc_to_visual

    folder = seed_mmmu_pro_cache(tmp_path)
    assert seed_mmmu_pro_cache(tmp_path) == folder  # idempotent
    table = datasets.Dataset.from_file(str(folder / "mmmu_pro-test.arrow"))
    assert len(table) == 1730
    for doc in table.select(range(0, 1730, 7)):
        wanted = set(re.findall(r"<image (\d+)>", doc["question"] + doc["options"]))
        assert {k for k in range(1, 8) if doc[f"image_{k}"] is not None} == {int(n) for n in wanted}
        assert len(mmmu_pro_doc_to_visual(doc)) == len(wanted) >= 1
        prompt = mmmu_pro_doc_to_text(doc, {"post_prompt": "Answer with the option letter."})
        assert doc["question"] in prompt and "A. " in prompt
