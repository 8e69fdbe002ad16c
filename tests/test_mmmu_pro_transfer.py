"""Transfer: the shipped MMMU-Pro text subject router places documents of other tasks by
reading their text, in a real offline ``python -m lmms_eval --model coemodel`` run over the
synthetic copies of mmmu_val, mmstar and ScienceQA-FULL; mmmu_val routes by its own subject
field (``subject_source``), the others by the predicted MMMU subject."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from conftest import REPO
from lmms_transfer import (
    offline_rows,
    routing_rows,
    run_transfer,
    subject_distribution,
    transfer_workspace,
)

from benchcoe_plugins.core.documents import RoutingDocument, subject_of
from benchcoe_plugins.routers.base import Router

pytestmark = pytest.mark.slow

ROUTER = REPO / "router_ckpts" / "mmmu_pro_subject"
ROWS, LIMIT = 8, 6
# task -> the offline dataset its documents come from (scienceqa_full is the group scienceqa + scienceqa_img)
DATASET_OF = {"mmmu_val": "mmmu_val", "mmstar": "mmstar", "scienceqa": "scienceqa", "scienceqa_img": "scienceqa_img"}


@pytest.fixture(scope="module")
def run() -> Iterator[tuple[Path, list[dict]]]:
    root = Path(tempfile.mkdtemp(prefix="benchcoe-transfer-"))
    transfer_workspace(root, ROUTER, ROWS)
    out = run_transfer(root, LIMIT, tasks="mmmu_val,mmstar,scienceqa_full")
    yield out, routing_rows(out)
    shutil.rmtree(root, ignore_errors=True)


def expected_decision(router: Router, task: str, doc_id: int):
    """What the router decides for the document, rebuilt here from the dataset row: the text the
    adapter reads for the task (question; ScienceQA: question and hint), the subject source per task."""
    row = offline_rows(DATASET_OF[task], ROWS)[doc_id]
    text = "\n".join(str(row[f]) for f in (["question", "hint"] if task.startswith("scienceqa") else ["question"])
                     if row.get(f))
    document = RoutingDocument(task, doc_id, text, row)
    given = subject_of(task, row) if task == "mmmu_val" else None
    return router.decide([document], subjects=[given])[0], row


def test_every_document_is_placed_by_its_text_or_its_subject_field(run) -> None:
    _, rows = run
    router = Router.load(ROUTER)
    assert {(r["task"]) for r in rows} == set(DATASET_OF) and len(rows) == LIMIT * len(DATASET_OF)
    for log in rows:
        decision, row = expected_decision(router, log["task"], log["doc_id"])
        assert log["subject"] == decision.subject and log["subject"] in router.subjects_, log
        assert log["router_expert"] == decision.expert, log
        if log["task"] == "mmmu_val":  # the doc's own MMMU subject, read from its id
            assert log["subject"] == subject_of("mmmu_val", row)
        if row.get("image") is None and "image_1" not in row:  # image-free ScienceQA: only the text model can answer
            assert log["expert"] == "text" and log["reason"].startswith("image-free document"), log
        else:
            assert log["expert"] == decision.expert


def test_subject_distribution_per_task(run) -> None:
    _, rows = run
    distribution = subject_distribution(rows)
    assert set(distribution) == set(DATASET_OF)
    assert all(sum(c.values()) == LIMIT for c in distribution.values())
    # mmmu_val's subjects are its own (from the ids); MMStar's categories are no MMMU subjects, so none appears
    assert set(distribution["mmmu_val"]) == {subject_of("mmmu_val", r) for r in offline_rows("mmmu_val", ROWS)[:LIMIT]}
    assert not set(distribution["mmstar"]) & {"coarse perception", "fine-grained perception", "instance reasoning"}
