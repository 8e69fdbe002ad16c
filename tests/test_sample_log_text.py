"""What a router learns from harness sample logs must be what it reads at run time."""

from __future__ import annotations

import json
from pathlib import Path

from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.core.documents import question_text
from benchcoe_plugins.routers.table import TableRouter
from benchcoe_plugins.training.sample_logs import load_sample_logs


def write_log(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "samples_toy_2026-01-01T00-00-00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_document_with_several_question_fields_is_read_as_at_run_time(tmp_path: Path) -> None:
    """A document with question, problem and query fields: training joined them in another order (and
    kept only the first) than the run-time router, so the two read different texts."""
    doc = {"question": "Which gas?", "problem": "Balance the equation.", "query": "Name it.", "subject": "chemistry"}
    for expert, score in (("a", 1.0), ("b", 0.0)):
        write_log(tmp_path / expert, [{"doc_id": 0, "doc": doc, "exact_match": score}])
    data = load_sample_logs({e: [tmp_path / e] for e in ("a", "b")})
    TableRouter.from_table({"chemistry": "a"}, experts=["a", "b"]).save(tmp_path / "router")
    (tmp_path / "coe.yaml").write_text("router: router\nexperts:\n  a: {model: hf}\n  b: {model: hf}\n")
    config = load_config(tmp_path / "coe.yaml", known_models=lambda: ["hf"])
    at_run_time = question_text(doc, config.question_fields_for("toy"), None, "toy", 0)
    assert data.documents[0].text == at_run_time == "Which gas?\nName it.\nBalance the equation."


def test_lmms_eval_mmstar_logs_are_scored_by_their_average_field(tmp_path: Path) -> None:
    """lmms-eval 0.7.3's mmstar writes a per-document `average` dict (and one per category), no `mmstar_acc`."""
    for expert, score in (("a", 1.0), ("b", 0.0)):
        write_log(tmp_path / expert, [{"doc_id": 0, "input": "What is shown?", "target": "A",
                                       "average": {"question_id": 0, "category": "math", "score": score},
                                       "math": {"question_id": 0, "category": "math", "score": score}}])
    data = load_sample_logs({e: [tmp_path / e] for e in ("a", "b")})
    assert data.correct.tolist() == [[1.0, 0.0]]


def test_a_log_likelihood_log_gives_a_cascade_no_answer_text(tmp_path: Path) -> None:
    """Its responses are [log-prob, is-greedy] pairs: a cascade trained on them could never be served."""
    from benchcoe_plugins.training.sample_logs import first_response

    assert first_response({"resps": [[["-11.94", "False"]], [["-3.2", "True"]]]}) is None
    assert first_response({"resps": [["The answer is (B)."]]}) == "The answer is (B)."
