"""The same documents get the same experts whatever the batch, the order of tasks or the
split of documents over processes (each rank routes every N-th document)."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import REPO, SHARED_DATA
from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.routers.registry import load_router


@pytest.fixture(scope="module")
def documents() -> list[RoutingDocument]:
    with gzip.open(SHARED_DATA / "mmlu_pro" / "questions.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for _, line in zip(range(400), handle)]
    return [RoutingDocument("mmlu_pro_" + r["category"].replace(" ", "_"), i, r["question"], r) for i, r in enumerate(rows)]


@pytest.mark.parametrize("name", ["mmlu_pro_subject", "mmlu_pro_query"])
def test_routing_is_independent_of_batching_order_and_ranks(documents, name: str) -> None:
    router = load_router(REPO / "router_ckpts" / name)
    reference = dict(zip((d.key for d in documents), router.predict(documents)))
    assert len(set(reference.values())) > 1, "the router sends everything to one expert: the test could not fail"

    reordered = sorted(documents, key=lambda d: (d.task, -int(d.doc_id)))  # another task order
    assert dict(zip((d.key for d in reordered), router.predict(reordered))) == reference

    in_batches = {}
    for start in range(0, len(documents), 7):
        batch = documents[start:start + 7]
        in_batches.update(zip((d.key for d in batch), router.predict(batch)))
    assert in_batches == reference

    per_rank = {}
    for rank in range(2):
        share = documents[rank::2]
        per_rank.update(zip((d.key for d in share), router.predict(share)))
    assert per_rank == reference
