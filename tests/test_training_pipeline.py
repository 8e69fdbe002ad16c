"""Records / sample-log reading, metrics, and the train / evaluate / report CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchcoe_plugins.cli import main
from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.training.dataset import split_indices
from benchcoe_plugins.training.metrics import routing_entropy
from benchcoe_plugins.training.records import load_mmlu_pro, load_mmmu, read_jsonl
from benchcoe_plugins.training.sample_logs import load_sample_logs, task_of
from conftest import write_mmlu_pro_records

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MMLU = SHARED / "mmlu_pro"
EXPERTS = ["Meta-Llama-3_1-8B-Instruct", "gemma-7b", "mathstral-7B"]


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory) -> Path:
    """A records folder holding a real 400-question slice (4 subjects) of the shared MMLU-Pro records."""
    root = tmp_path_factory.mktemp("mmlu_slice")
    wanted = {"math": 100, "law": 100, "psychology": 100, "biology": 100}
    rows = []
    for row in read_jsonl(MMLU / "questions.jsonl.gz"):
        if wanted.get(row["category"], 0) > 0:
            wanted[row["category"]] -= 1
            rows.append(row)
    return write_mmlu_pro_records(root, rows, EXPERTS)


def write_lm_eval_logs(folder: Path, data, expert: int, drop: int = 0) -> Path:
    """lm-eval --log_samples rows (doc, doc_id, target, resps, exact_match) from real records."""
    folder.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[dict]] = {}
    for row_index, document in enumerate(data.documents[drop:], drop):
        by_task.setdefault(document.task, []).append({
            "doc_id": len(by_task.get(document.task, [])), "doc": dict(document.doc), "target": document.doc["answer"],
            "arguments": {"gen_args_0": {"arg_0": "prompt", "arg_1": {}}}, "resps": [["x"]], "filtered_resps": ["x"],
            "doc_hash": str(document.doc_id), "exact_match": float(data.correct[row_index, expert])})
    for task, rows in by_task.items():
        (folder / f"samples_{task}_2025-01-01T00-00-00.000000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results_2025-01-01T00-00-00.000000.json").write_text(json.dumps({"results": {}}))
    return folder


def test_mmlu_pro_records_become_routing_documents(slice_dir):
    data = load_mmlu_pro(slice_dir, EXPERTS)
    assert len(data) == 400 and data.experts == EXPERTS and data.correct.shape == (400, 3)
    document = data.documents[0]
    assert document.task.startswith("mmlu_pro_") and document.text == document.doc["question"]
    assert document.doc_id == document.doc["question_id"]
    assert set(data.subjects) == {"math", "law", "psychology", "biology"}
    # correctness agrees with pred == answer in the raw record
    raw = {r["question_id"]: r for r in read_jsonl(slice_dir / "records" / "gemma-7b.jsonl.gz")}
    column = data.experts.index("gemma-7b")
    assert all(data.correct[i, column] == float(raw[d.doc_id]["pred"] == d.doc["answer"]) for i, d in enumerate(data.documents))


def test_mmmu_records_and_lmms_eval_logs(tmp_path):
    data = load_mmmu(SHARED / "mmmu")
    assert len(data) == 900 and len(data.experts) == 2 and len(set(data.subjects)) == 30
    assert 0.2 < data.correct.mean() < 0.6
    # lmms-eval style logs: no doc, a doc_hash, mmmu_acc dict with id / answer / parsed_pred
    for j, expert in enumerate(data.experts):
        rows = [{"doc_id": i, "doc_hash": f"h{d.doc_id}", "target": "A", "input": "", "resps": [["A"]], "filtered_resps": ["A"],
                 "mmmu_acc": {"id": d.doc_id, "subdomain": "x", "answer": "A", "parsed_pred": "A" if data.correct[i, j] else "B"}}
                for i, d in enumerate(data.documents[:50])]
        (tmp_path / expert).mkdir()
        (tmp_path / expert / "samples_mmmu_val_2025-01-01T00-00-00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    logs = load_sample_logs({e: [tmp_path / e] for e in data.experts})
    np.testing.assert_array_equal(logs.correct, data.correct[:50])
    assert logs.subjects == data.subjects[:50]


def test_lm_eval_logs_join_and_report_missing_documents(slice_dir, tmp_path):
    data = load_mmlu_pro(slice_dir, EXPERTS[:2])
    a = write_lm_eval_logs(tmp_path / "a", data, 0)
    b = write_lm_eval_logs(tmp_path / "b", data, 1, drop=5)
    logs = load_sample_logs({"a": [a], "b": [b]})
    assert len(logs) == 395 and len(logs.missing["b"]) == 5
    assert logs.documents[0].text == logs.documents[0].doc["question"]
    # each row carries its own question's correctness (joined by question_id, not the per-task position)
    truth = {d.doc["question_id"]: data.correct[i, :2] for i, d in enumerate(data.documents)}
    assert all((logs.correct[i] == truth[d.doc["question_id"]]).all() for i, d in enumerate(logs.documents))
    with pytest.raises(RecordsError, match="missing for some experts"):
        load_sample_logs({"a": [a], "b": [b]}, on_missing="error")


def test_bad_sample_logs_give_clear_errors(slice_dir, tmp_path):
    data = load_mmlu_pro(slice_dir, EXPERTS[:2])
    a = write_lm_eval_logs(tmp_path / "a", data, 0)
    with pytest.raises(RecordsError, match="at least two experts"):
        load_sample_logs({"a": [a]})
    with pytest.raises(RecordsError, match="metric 'bleu'.*exact_match"):
        load_sample_logs({"a": [a], "b": [a]}, metric="bleu")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "samples_mmlu_pro_law_2025-01-01T00-00-00.jsonl").write_text("")
    with pytest.raises(RecordsError, match="empty"):
        load_sample_logs({"a": [a], "e": [tmp_path / "empty"]})
    other = tmp_path / "other"
    other.mkdir()
    (other / "samples_gsm8k_2025-01-01T00-00-00.jsonl").write_text(json.dumps({"doc_id": 0, "doc": {"question": "q"}, "exact_match": 1.0}) + "\n")
    with pytest.raises(RecordsError, match="share no documents"):
        load_sample_logs({"a": [a], "o": [other]})


def test_split_and_entropy():
    parts = split_indices(100, seed=3)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (60, 10, 30)
    assert np.array_equal(split_indices(100, seed=3)["test"], parts["test"])
    assert not np.array_equal(split_indices(100, seed=4)["test"], parts["test"])
    assert routing_entropy(["a"] * 10) == 0.0
    assert routing_entropy(["a", "b"] * 5) == pytest.approx(np.log(2))


def test_train_evaluate_report_end_to_end(slice_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt_query"
    assert main(["train", "--records", str(slice_dir), "--router", "query", "--seed", "1", "--output", str(ckpt),
                 "--quiet", "--no-plots"]) == 0
    manifest = json.loads((ckpt / "router.json").read_text())
    assert manifest["experts"] == EXPERTS and manifest["seed"] == 1
    assert manifest["data"]["documents"] == 400 and manifest["data"]["split"]["test"] == 120
    evaluation = manifest["evaluation"]
    base = evaluation["baselines"]
    assert base["oracle"]["accuracy"] >= evaluation["accuracy"] >= 0
    assert evaluation["mu_o"] == pytest.approx(evaluation["accuracy"] / base["oracle"]["accuracy"], rel=1e-3)
    guard = manifest["tuning"]["guard"]
    assert guard["held_out_documents"] == 40 and guard["guard_z"] == 1.0  # the validation split
    assert (manifest["tuning"]["mode"] == "best") == (not guard["routes"])
    split = json.loads((ckpt / "split.json").read_text())
    assert not set(split["test"]) & set(split["train"]) and not set(split["validation"]) & set(split["train"])

    subject = tmp_path / "ckpt_subject"
    assert main(["train", "--records", str(slice_dir), "--router", "subject", "--seed", "1", "--output", str(subject),
                 "--quiet", "--no-plots"]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", "--router", str(subject), "--records", str(slice_dir), "--output", str(out)]) == 0
    evaluated = json.loads((out / "evaluation.json").read_text())
    trained = json.loads((subject / "router.json").read_text())
    assert evaluated["accuracy"] == trained["evaluation"]["accuracy"]
    assert evaluated["baselines"]["best_single"] == trained["evaluation"]["baselines"]["best_single"]
    assert trained["guard"]["method"] == "5-fold cross-validation" and trained["guard"]["held_out_documents"] == 240
    assert (out / "per_subject_accuracy.png").stat().st_size > 1000 and (out / "routing_distribution.png").is_file()
    assert "mu_o" in (out / "evaluation.md").read_text()

    report = tmp_path / "report"
    assert main(["report", "--records", str(slice_dir), "--router", f"subject={subject}", "--router", f"query={ckpt}",
                 "--output", str(report)]) == 0
    table = json.loads((report / "per_subject.json").read_text())
    assert set(table["accuracy"]) == set(EXPERTS) | {"CoE subject", "CoE query"}
    assert table["accuracy"]["CoE subject"]["overall"] == pytest.approx(evaluated["accuracy"])
    assert (report / "per_subject.png").is_file()
    # the report's paired router - best single (interval included) is the evaluation's, overall
    assert table["router_minus_best_single"]["CoE subject"]["overall"] == evaluated["router_minus_best_single"]
    assert table["best_single"] == evaluated["baselines"]["best_single"]["expert"]
    assert (report / "gain_subject.png").stat().st_size > 1000 and "95 % [" in (report / "per_subject.md").read_text()


def test_report_from_harness_results_folders(slice_dir, tmp_path):
    data = load_mmlu_pro(slice_dir, EXPERTS[:2])
    runs = [f"{e}={write_lm_eval_logs(tmp_path / e, data, j)}" for j, e in enumerate(EXPERTS[:2])]
    coe = write_lm_eval_logs(tmp_path / "coe", data, 0)
    # the routing log names documents as the harness does: task and the task's own doc_id
    routed = [{"task": task_of(path), "doc_id": json.loads(line)["doc_id"], "expert": EXPERTS[0]}
              for path in sorted(coe.glob("samples_*.jsonl")) for line in path.read_text().splitlines()]
    (coe / "routing_2025.jsonl").write_text("".join(json.dumps(r) + "\n" for r in routed))
    assert main(["report", "--run", runs[0], "--run", runs[1], "--run", f"coe={coe}", "--output", str(tmp_path / "r")]) == 0
    table = json.loads((tmp_path / "r" / "per_subject.json").read_text())
    assert table["accuracy"]["coe"]["math"] == pytest.approx(table["accuracy"][EXPERTS[0]]["math"])
    assert table["routing"]["coe"]["documents_per_expert"] == {EXPERTS[0]: 400}
    assert table["accuracy"][EXPERTS[1]]["overall"] == pytest.approx(float(data.correct[:, 1].mean()))

def write_math_run(folder: Path, scores: dict[str, list[float]], metric: str = "exact_match") -> Path:
    """An lm-eval output folder of task mmlu_pro_math: per filter name, the scores of questions 0, 1, ..."""
    folder.mkdir(parents=True)
    rows = [{"doc_id": i, "doc": {"question_id": i, "category": "math", "question": f"q{i}"}, "target": "A",
             "resps": [["x"]], "filtered_resps": ["x"], "filter": name, metric: score}
            for name, values in scores.items() for i, score in enumerate(values)]
    (folder / "samples_mmlu_pro_math_2025-01-01T00-00-00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results_2025-01-01T00-00-00.json").write_text(json.dumps({"results": {}}))
    return folder


def test_report_scores_each_run_through_the_chosen_filter(tmp_path, capsys):
    runs = [f"--run={name}={write_math_run(tmp_path / name, {'strict-match': [right] * 4, 'flexible-extract': [0.0] * 4})}"
            for name, right in (("a", 1.0), ("b", 0.0))]
    assert main(["report", *runs, "--filter", "strict-match", "--output", str(tmp_path / "r")]) == 0
    table = json.loads((tmp_path / "r" / "per_subject.json").read_text())
    assert table["accuracy"]["a"]["overall"] == 1.0 and table["documents"]["overall"] == 4
    capsys.readouterr()
    assert main(["report", *runs, "--output", str(tmp_path / "r2")]) == 2
    error = capsys.readouterr().err
    assert "several filters ['flexible-extract', 'strict-match']" in error and "--filter NAME" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "r2").exists()


def test_report_compares_runs_over_the_documents_all_of_them_scored(tmp_path, capsys):
    small = write_math_run(tmp_path / "small", {"none": [1.0, 1.0]})
    big = write_math_run(tmp_path / "big", {"none": [1.0, 1.0] + [0.0] * 8})
    (big / "routing_2025.jsonl").write_text("".join(json.dumps({"task": "mmlu_pro_math", "doc_id": i, "expert": "x"}) + "\n"
                                                    for i in range(10)))
    runs = [f"--run=small={small}", f"--run=big={big}"]
    assert main(["report", *runs, "--output", str(tmp_path / "r")]) == 0
    assert "every figure is over the 2 documents all of them scored" in capsys.readouterr().out
    table = json.loads((tmp_path / "r" / "per_subject.json").read_text())
    assert table["accuracy"]["big"] == {"math": 1.0, "overall": 1.0} and table["documents"]["overall"] == 2
    assert table["shared_documents"] == {"documents": 2, "documents_per_run": {"small": 2, "big": 10}}
    assert table["routing"]["big"]["documents_per_expert"] == {"x": 2}
    assert "over the 2 documents all runs scored (documents per run: small 2, big 10)" in (
        tmp_path / "r" / "per_subject.md").read_text()
    assert main(["report", *runs, "--strict-missing", "--output", str(tmp_path / "r2")]) == 2
    error = capsys.readouterr().err
    assert "hold different documents (per run: small 2, big 10; 2 in all of them)" in error
    assert len(error.splitlines()) == 1


def test_report_refuses_runs_scored_with_different_metrics(tmp_path, capsys):
    """As training refuses experts scored with different metrics: the accuracies are not comparable."""
    runs = [f"--run=a={write_math_run(tmp_path / 'a', {'none': [1.0] * 4})}",
            f"--run=b={write_math_run(tmp_path / 'b', {'none': [0.0] * 4}, metric='acc')}"]
    assert main(["report", *runs, "--output", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "the --run folders were scored with different metrics {'a': {'exact_match'}, 'b': {'acc'}}" in error
    assert "pass --metric" in error and len(error.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_report_refuses_a_run_folder_holding_two_runs_of_a_task_in_words_about_runs(tmp_path, capsys):
    twice = write_math_run(tmp_path / "twice", {"none": [1.0] * 4})
    (twice / "samples_mmlu_pro_math_2025-02-02T00-00-00.jsonl").write_text(
        (twice / "samples_mmlu_pro_math_2025-01-01T00-00-00.jsonl").read_text())
    once = write_math_run(tmp_path / "once", {"none": [1.0] * 4})
    assert main(["report", f"--run=once={once}", f"--run=twice={twice}", "--output", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "2025-02-02T00-00-00.jsonl: document" in error and "appears in samples_mmlu_pro_math_2025-01-01T00-00-00.jsonl too" \
        in error, "both files are named"
    assert "give --run twice the output folder of one run" in error, error
    assert "expert" not in error and len(error.splitlines()) == 1


def test_cli_errors_are_clear(slice_dir, tmp_path, capsys):
    assert main(["train", "--records", str(slice_dir), "--experts", "gemma-7b", "--output", str(tmp_path / "x")]) == 2
    assert "at least two experts" in capsys.readouterr().err
    assert main(["train", "--records", str(slice_dir), "--experts", "gemma-7b", "nobody", "--output", str(tmp_path / "x")]) == 2
    assert "no records for experts ['nobody']" in capsys.readouterr().err
    assert main(["evaluate", "--router", str(tmp_path / "none"), "--records", str(slice_dir)]) == 2
    assert "router.json is missing" in capsys.readouterr().err
