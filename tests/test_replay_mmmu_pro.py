"""Replay of the shipped MMMU-Pro records through lmms-eval's own MMMU answer parser: every
record of every expert, on every one of the 1,730 documents, scores what the record says."""

from __future__ import annotations

import ast
import random

import pytest
from conftest import REPO

from benchcoe_plugins.core.errors import ConfigError, RecordsError
from benchcoe_plugins.experts.replay import ReplayAnswerer, ReplayBook, ReplayRequest, wrong_letter
from benchcoe_plugins.offline.mmmu_pro import TASK, VLM_POOL

REPLAY = REPO / "tasks" / "mmmu_pro" / "replay"


def documents() -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(REPO / "tasks" / "mmmu_pro" / "test.parquet").to_pylist()


@pytest.mark.parametrize("expert", VLM_POOL)
def test_every_replayed_answer_parses_to_the_recorded_verdict(expert) -> None:
    from lmms_eval.tasks.mmmu_pro.utils import get_multi_choice_info, parse_multi_choice_response

    docs = documents()
    book = ReplayBook(records=REPLAY / f"{expert}.jsonl.gz", key="id", no_answer="wrong_letter")
    answers = ReplayAnswerer(book).answer_all([ReplayRequest("generate_until", TASK, i, doc, 0)
                                               for i, doc in enumerate(docs)])
    random.seed(0)
    unparsed = 0
    for doc, answer in zip(docs, answers):
        index2ans, all_choices = get_multi_choice_info(ast.literal_eval(doc["options"]))
        state = random.getstate()
        parsed = parse_multi_choice_response(answer, all_choices, index2ans)
        assert random.getstate() == state, f"{doc['id']}: the parser guessed at random on {answer!r}"
        record = book.by_field[doc["id"]]
        if record.answer is None:
            unparsed += 1
            assert parsed != doc["answer"]
        else:
            assert parsed == record.answer, doc["id"]
    assert unparsed == {"InternVL2-8B": 0, "InternVL2-40B": 91, "InternVL2-Llama3-76B": 90,
                        "llava-onevision-qwen2-7b-vo-hf": 3, "llava-onevision-qwen2-72b-vo-hf": 6}[expert]


def test_wrong_letter_and_bad_input() -> None:
    assert wrong_letter({"options": "['x', 'y', 'z']", "answer": "A"}) == "B"
    assert wrong_letter({"options": ["x", "y"], "answer": "B"}) == "A"
    with pytest.raises(RecordsError, match="no_answer=wrong_letter needs documents with 'options'"):
        wrong_letter({"question": "no options here", "answer": "A"})
    with pytest.raises(ConfigError, match="no_answer='guess' must be one of"):
        ReplayBook(records=REPLAY / "InternVL2-8B.jsonl.gz", no_answer="guess")
