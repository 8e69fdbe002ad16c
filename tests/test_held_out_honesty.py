"""What is printed as held-out is held-out: split keys that mean the same question in records and
sample logs, validation and transfer figures labelled for what they are, reports that refuse
routers fitted on the test part; sample logs read as the harnesses write them (filters, lmms-eval
names); MMMU answers scored by MMMU's own parser; router files that contradict themselves refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_training_pipeline import EXPERTS, SHARED, slice_dir, write_lm_eval_logs  # noqa: F401

from benchcoe_plugins.cli import main
from benchcoe_plugins.core.errors import RecordsError, RouterFormatError
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.training.records import load_mmlu_pro, load_mmmu, mmmu_is_correct, read_jsonl
from benchcoe_plugins.training.sample_logs import load_sample_logs, task_of


@pytest.fixture(scope="module")
def subject_router(slice_dir, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("ckpt") / "subject"
    assert main(["train", "--records", str(slice_dir), "--router", "subject", "--seed", "1", "--output", str(out),
                 "--quiet", "--no-plots"]) == 0
    return out


def test_sample_logs_and_records_name_a_question_by_the_same_split_key(slice_dir, subject_router, tmp_path):  # noqa: F811
    """The harness numbers documents 0, 1, ... per task; the split must key them by question_id, or a
    'held-out' evaluation from logs scores training questions and drops others silently."""
    data = load_mmlu_pro(slice_dir, EXPERTS)
    logs = [f"--samples={e}={write_lm_eval_logs(tmp_path / e, data, j)}" for j, e in enumerate(EXPERTS)]
    assert data.keys() == load_sample_logs({e: [tmp_path / e] for e in EXPERTS}).keys()
    assert main(["evaluate", "--router", str(subject_router), *logs, "--output", str(tmp_path / "ev"),
                 "--no-plots"]) == 0
    from_logs = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    trained = json.loads((subject_router / "router.json").read_text())["evaluation"]
    assert from_logs["documents"] == trained["documents"] == 120
    assert from_logs["accuracy"] == trained["accuracy"]


def test_validation_figures_are_labelled_in_sample(slice_dir, tmp_path, capsys):  # noqa: F811
    router = tmp_path / "q"
    assert main(["train", "--records", str(slice_dir), "--router", "query", "--refit", "--no-guard", "--seed", "1",
                 "--output", str(router), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--router", str(router), "--records", str(slice_dir), "--subset", "validation",
                 "--no-plots", "--no-cost-curve", "--output", str(tmp_path / "ev")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("benchcoe evaluate: q: IN-SAMPLE accuracy")
    markdown = (tmp_path / "ev" / "evaluation.md").read_text()
    assert "refitted on them" in markdown and "never used for training" not in markdown


def test_a_transfer_onto_training_documents_is_refused(slice_dir, tmp_path, capsys):  # noqa: F811
    assert main(["train", "--records", str(slice_dir), "--router", "table", "--test-source", f"records={slice_dir}",
                 "--output", str(tmp_path / "t")]) == 2
    assert "400 of the 400 --test-source documents are also training documents" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_report_refuses_a_router_fitted_on_the_test_part(slice_dir, subject_router, tmp_path, capsys):  # noqa: F811
    other = tmp_path / "seed2"
    assert main(["train", "--records", str(slice_dir), "--router", "subject", "--seed", "2", "--output", str(other),
                 "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["report", "--records", str(slice_dir), "--router", f"s1={subject_router}", "--router", f"s2={other}",
                 "--output", str(tmp_path / "r")]) == 2
    assert "router 's2' was fitted on" in capsys.readouterr().err


def test_costs_are_checked_before_fitting(slice_dir, tmp_path, capsys):  # noqa: F811
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"unit": "B", "models": {EXPERTS[0]: {"parameters": 8}}}))
    assert main(["train", "--records", str(slice_dir), "--router", "query", "--tuning", "cv", "--costs", str(costs),
                 "--output", str(tmp_path / "q")]) == 2
    out, err = capsys.readouterr()
    assert "--costs" in err and EXPERTS[1] in err
    assert "documents x" not in out and not (tmp_path / "q").exists()  # stopped before the split and the fit


def test_a_task_scored_through_two_filters_needs_one_named(slice_dir, tmp_path):  # noqa: F811
    data = load_mmlu_pro(slice_dir, EXPERTS[:2])
    for j, expert in enumerate(EXPERTS[:2]):
        folder = write_lm_eval_logs(tmp_path / expert, data, j)
        for path in folder.glob("samples_*.jsonl"):
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            both = [{**r, "filter": "custom-extract"} for r in rows] + [{**r, "filter": "never", "exact_match": 0.0}
                                                                       for r in rows]
            path.write_text("".join(json.dumps(r) + "\n" for r in both))
    paths = {e: [tmp_path / e] for e in EXPERTS[:2]}
    with pytest.raises(RecordsError, match=r"several filters \['custom-extract', 'never'\].*--filter"):
        load_sample_logs(paths)
    chosen = load_sample_logs(paths, filter_name="custom-extract")
    np.testing.assert_array_equal(chosen.correct, data.correct)
    with pytest.raises(RecordsError, match="no rows of filter 'strict'"):
        load_sample_logs(paths, filter_name="strict")
    for expert in EXPERTS[:2]:  # a run of one more task, scored through one filter ('none')
        other = sorted((tmp_path / expert).glob("samples_*.jsonl"))[0]
        single = other.with_name(other.name.replace("samples_", "samples_single_", 1))
        rows = [json.loads(line) for line in other.read_text().splitlines() if '"custom-extract"' in line]
        single.write_text("".join(json.dumps({**r, "filter": "none"}) + "\n" for r in rows))
    mixed = load_sample_logs(paths, filter_name="custom-extract")
    assert len(mixed) == len(data) + len(rows), "the single-filter task keeps its rows under --filter"


def test_test_source_samples_reads_a_folder_per_expert(slice_dir, subject_router, tmp_path):  # noqa: F811
    data = load_mmlu_pro(slice_dir, EXPERTS)
    keep = [i for i, d in enumerate(data.documents) if d.task == "mmlu_pro_math"]
    math = data.subset(keep)
    for j, expert in enumerate(EXPERTS):
        write_lm_eval_logs(tmp_path / "logs" / expert, math, j)
    assert main(["train", "--records", str(slice_dir), "--router", "table", "--train-where",
                 "category=law,psychology,biology", "--test-source", f"samples={tmp_path / 'logs'}",
                 "--output", str(tmp_path / "t"), "--no-plots"]) == 0
    assert json.loads((tmp_path / "t" / "router.json").read_text())["evaluation"]["documents"] == len(keep)


def test_lmms_eval_file_names_give_the_task():
    assert task_of(Path("20260101_120000_samples_mmmu_pro_standard.jsonl")) == "mmmu_pro_standard"
    assert task_of(Path("samples_mmlu_pro_law_2026-01-01T12-00-00.123.jsonl")) == "mmlu_pro_law"
    with pytest.raises(RecordsError, match="not a harness sample log"):
        task_of(Path("results.jsonl"))


def test_mmmu_scoring_is_the_harness_parser_without_its_random_guess():
    """Every MMMU record is scored as lmms-eval's MMMU parser scores it where the parse does not depend on
    its random guess; where nothing parses the answer is wrong (the parser would guess a letter)."""
    import random

    from lmms_eval.tasks.mmmu import utils as mmmu

    gold = json.loads((SHARED / "mmmu" / "answer_dict_val.json").read_text())
    checked = unparsed = 0
    for expert in ("llava1.5_13b", "qwen_vl"):
        for record in read_jsonl(SHARED / "mmmu" / f"{expert}.jsonl.gz"):
            reference = gold[record["id"]]
            ours = mmmu_is_correct(record, reference)
            if record["question_type"] != "multiple-choice":
                assert ours == bool(mmmu.eval_open(reference["ground_truth"], mmmu.parse_open_response(record["response"])))
                continue
            picks = set()
            for seed in range(4):
                random.seed(seed)
                picks.add(mmmu.parse_multi_choice_response(record["response"], record["all_choices"], record["index2ans"]))
            if len(picks) == 1:
                checked += 1
                assert ours == bool(mmmu.eval_multi_choice(reference["ground_truth"], picks.pop())), record["id"]
            else:
                unparsed += 1
                assert ours is False, record["id"]
    assert checked > 1500 and unparsed > 0
    assert mmmu_is_correct({"response": "Therefore, the answer is (A).", "question_type": "multiple-choice",
                            "index2ans": {"A": "5.56", "B": "4.00"}, "all_choices": ["A", "B"]}, {"ground_truth": "A"})
    assert len(load_mmmu(SHARED / "mmmu")) == 900


def test_a_router_file_that_contradicts_itself_is_refused(slice_dir, subject_router, tmp_path):  # noqa: F811
    query = tmp_path / "q"
    assert main(["train", "--records", str(slice_dir), "--router", "query", "--seed", "1", "--output", str(query),
                 "--quiet", "--no-plots"]) == 0
    edits = {
        "fewer subjects": lambda m: m.update(subjects=m["subjects"][:2]),
        "a subject without a table entry": lambda m: m["table"].pop(m["subjects"][0]),
        "a table naming a stranger": lambda m: m["table"].update({m["subjects"][0]: "gpt5"}),
        "an unknown best expert": lambda m: m["state"].update(mode="best", best_expert="gpt5"),
    }
    for what, edit in edits.items():
        for original in (query, subject_router):
            if what == "an unknown best expert" and original is subject_router:
                continue
            broken = tmp_path / f"broken_{original.name}_{what.replace(' ', '_')}"
            shutil.copytree(original, broken)
            manifest = json.loads((broken / "router.json").read_text())
            edit(manifest)
            (broken / "router.json").write_text(json.dumps(manifest))
            with pytest.raises(RouterFormatError):
                Router.load(broken)
    assert Router.load(query).experts_ == EXPERTS


def test_retraining_replaces_the_router_folder_whole(slice_dir, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "router"
    assert main(["train", "--records", str(slice_dir), "--router", "query", "--output", str(folder), "--quiet",
                 "--no-plots"]) == 0
    assert list(folder.glob("*.safetensors"))
    assert main(["train", "--records", str(slice_dir), "--router", "table", "--output", str(folder), "--no-plots"]) == 0
    assert not list(folder.glob("*.safetensors")), "the query router's weights outlived it"
    assert json.loads((folder / "router.json").read_text())["kind"] == "table"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["train", "--records", str(slice_dir), "--router", "table", "--output", str(other)]) == 2
    assert "no router" in capsys.readouterr().err and (other / "mine.txt").read_text() == "keep me"


def test_a_score_that_is_not_a_finite_number_is_refused(slice_dir, tmp_path):  # noqa: F811
    data = load_mmlu_pro(slice_dir, EXPERTS[:2])
    for j, expert in enumerate(EXPERTS[:2]):
        write_lm_eval_logs(tmp_path / expert, data, j)
    path = next((tmp_path / EXPERTS[1]).glob("samples_*.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[3]["exact_match"] = float("nan")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RecordsError, match=r"is nan for document .*a score in \[0, 1\]"):
        load_sample_logs({e: [tmp_path / e] for e in EXPERTS[:2]})


def test_inspect_refuses_a_router_that_cannot_load(slice_dir, subject_router, tmp_path, capsys):  # noqa: F811
    broken = tmp_path / "broken"
    shutil.copytree(subject_router, broken)
    (broken / "subject.safetensors").write_bytes(b"not weights")
    assert main(["inspect", str(subject_router)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_router_folder_whose_parts_disagree_fails_when_it_loads(slice_dir, tmp_path):  # noqa: F811
    from safetensors.numpy import load_file, save_file

    query = tmp_path / "q"
    assert main(["train", "--records", str(slice_dir), "--router", "query", "--seed", "1", "--output", str(query),
                 "--quiet", "--no-plots"]) == 0

    def manifest(folder: Path, change) -> None:
        m = json.loads((folder / "router.json").read_text())
        change(m)
        (folder / "router.json").write_text(json.dumps(m))

    def shrink_vocabulary(folder: Path) -> None:
        vocabulary = {k: i for k, i in json.loads((folder / "tfidf_vocabulary.json").read_text()).items() if i < 50}
        (folder / "tfidf_vocabulary.json").write_text(json.dumps(vocabulary))
        save_file({"idf": load_file(str(folder / "tfidf.safetensors"))["idf"][:50]}, str(folder / "tfidf.safetensors"))

    def nan_weights(folder: Path) -> None:
        tensors = load_file(str(folder / "query.safetensors"))
        tensors["subject_head.coef"][:] = np.nan
        save_file(tensors, str(folder / "query.safetensors"))

    def wide_calibration(folder: Path) -> None:
        tensors = load_file(str(folder / "query.safetensors"))
        scores = tensors["calibration_scores"]
        tensors["calibration_scores"] = np.concatenate([scores, scores[:, :1]], axis=1)
        save_file(tensors, str(folder / "query.safetensors"))

    damage = {"vocabulary": shrink_vocabulary, "nan": nan_weights, "calibration": wide_calibration,
              "text": lambda f: manifest(f, lambda m: m["params"].update(text="zzz")),
              "head": lambda f: manifest(f, lambda m: m["params"].update(head="zzz")),
              "blend": lambda f: manifest(f, lambda m: m["state"].update(blend="x"))}
    for name, change in damage.items():
        broken = tmp_path / name
        shutil.copytree(query, broken)
        change(broken)
        with pytest.raises(RouterFormatError):
            Router.load(broken)


def test_tasks_without_a_subject_field_are_their_own_subjects(slice_dir, tmp_path, capsys):  # noqa: F811
    data = load_mmlu_pro(slice_dir, EXPERTS[:2])
    for j, expert in enumerate(EXPERTS[:2]):
        folder = write_lm_eval_logs(tmp_path / expert, data, j)
        for path in list(folder.glob("samples_mmlu_pro_*.jsonl")):
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            for row in rows:  # a task like gsm8k: no category, no src
                row["doc"] = {k: v for k, v in row["doc"].items() if k not in ("category", "src")}
            path.with_name(path.name.replace("samples_mmlu_pro_", "samples_quiz_")).write_text(
                "".join(json.dumps(r) + "\n" for r in rows))
            path.unlink()
    logs = load_sample_logs({e: [tmp_path / e] for e in EXPERTS[:2]})
    assert sorted(set(logs.subjects)) == ["quiz biology", "quiz law", "quiz math", "quiz psychology"]  # normalised
    samples = [f"--samples={e}={tmp_path / e}" for e in EXPERTS[:2]]
    assert main(["train", *samples, "--router", "subject", "--output", str(tmp_path / "s"), "--quiet",
                 "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["train", *samples, "--router", "table", "--output", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "has no subject field" in err and "--router subject or query" in err and "Traceback" not in err


def test_report_compares_routers_with_their_own_experts_by_default(slice_dir, tmp_path, capsys):  # noqa: F811
    """Without --experts the best single expert is one the routers could have chosen, not any model of
    the records (a router over two experts must not be measured against a third it never routes to)."""
    two = tmp_path / "two"
    assert main(["train", "--records", str(slice_dir), "--experts", *EXPERTS[1:], "--router", "subject", "--seed", "1",
                 "--output", str(two), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["report", "--records", str(slice_dir), "--router", f"s={two}", "--output", str(tmp_path / "r")]) == 0
    assert "the routers' own" in capsys.readouterr().out
    written = json.loads((tmp_path / "r" / "per_subject.json").read_text())
    assert written["best_single"] in EXPERTS[1:] and EXPERTS[0] not in json.dumps(written)


def test_evaluate_refuses_to_call_training_documents_held_out(slice_dir, subject_router, tmp_path, capsys):  # noqa: F811
    """A split file (or a test source) naming documents the router was fitted on is refused, not scored as
    held-out; a split whose parts share documents is refused by every command that reads it."""
    own = json.loads((subject_router / "split.json").read_text())
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"train": own["test"], "validation": [], "test": own["train"]}))
    assert main(["evaluate", "--router", str(subject_router), "--records", str(slice_dir), "--split", str(swapped),
                 "--no-plots", "--output", str(tmp_path / "ev")]) == 2
    assert "was fitted on" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()
    overlapping = tmp_path / "overlapping.json"
    overlapping.write_text(json.dumps({**own, "test": own["train"][:50]}))
    for command in (["evaluate", "--router", str(subject_router)], ["train", "--router", "table", "--output",
                                                                     str(tmp_path / "t")]):
        assert main([*command, "--records", str(slice_dir), "--split", str(overlapping), "--no-plots"]) == 2
        assert "are in both 'train' and 'test'" in capsys.readouterr().err
