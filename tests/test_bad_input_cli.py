"""Bad input through the real command lines: one clear line on stderr and a non-zero exit from
``lm_eval``, ``python -m lmms_eval`` and ``benchcoe``; a traceback only with BENCHCOE_DEBUG=1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import harness_env, run_cli
from benchcoe_plugins.routers.table import TableRouter

HARNESSES = {
    "lm_eval": ["lm_eval", "--model", "coe", "--tasks", "mmlu_pro_biology", "--limit", "1"],
    "lmms_eval": ["python", "-m", "lmms_eval", "--model", "coemodel", "--tasks", "mmstar", "--limit", "1"],
}


def bad_configs(folder: Path) -> dict[str, tuple[str, str]]:
    """case -> (config file, words the one line must hold)."""
    TableRouter.from_table({"biology": "a"}, experts=["a"]).save(folder / "router")
    (folder / "dup.yaml").write_text("router: router\nexperts:\n  a: {model: x}\n  a: {model: y}\n")
    (folder / "a.jsonl").write_text('{"question_id": 1, "pred": "A"}\n')
    (folder / "cache5.yaml").write_text(yaml.safe_dump({"router": "router", "result_cache": 5, "experts": {
        "a": {"model": "coe_replay", "model_args": {"records": "a.jsonl"}}}}))
    return {
        "missing": ("nope.yaml", "not found"),
        "duplicate expert": ("dup.yaml", "appears twice"),
        "result_cache: 5": ("cache5.yaml", "result_cache"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("harness, cases", [("lm_eval", ["duplicate expert", "result_cache: 5"]),
                                            ("lmms_eval", ["missing", "duplicate expert"])])
def test_bad_config_is_one_line_and_nonzero(tmp_path: Path, harness: str, cases: list[str]) -> None:
    configs = bad_configs(tmp_path)
    for case in cases:
        config, words = configs[case]
        result = run_cli([*HARNESSES[harness], "--model_args", f"config={config}"], cwd=tmp_path, check=False)
        assert result.returncode != 0, (case, result.returncode)
        errors = [line for line in result.stderr.splitlines() if "benchcoe: error:" in line]
        assert len(errors) == 1 and words in errors[0], (case, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (case, result.stderr[-2000:])


def test_debug_switch_shows_the_traceback(tmp_path: Path) -> None:
    bad_configs(tmp_path)
    result = run_cli([*HARNESSES["lm_eval"], "--model_args", "config=dup.yaml"], cwd=tmp_path, check=False,
                     env=harness_env({"BENCHCOE_DEBUG": "1"}))
    assert result.returncode != 0 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_benchcoe_bad_sample_log_is_one_line(tmp_path: Path) -> None:
    for expert in ("a", "b"):
        log = tmp_path / expert / "samples_toy_2026-01-01T00-00-00.jsonl"
        log.parent.mkdir()
        log.write_text(json.dumps({"doc_id": 0, "exact_match": 1.0, "doc": {"question": "q"}}) + "\ntrue\n")
    result = run_cli(["benchcoe", "train", "--samples", f"a={tmp_path / 'a'}", "--samples", f"b={tmp_path / 'b'}",
                      "--output", str(tmp_path / "router")], cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "is a JSON bool, not an object" in result.stderr, result.stderr


@pytest.mark.slow
def test_apply_chat_template_with_an_expert_lacking_one_fails_before_any_expert_runs(workspace, tmp_path) -> None:
    from coe_workspace import lm_eval_command, workspace_env
    from tiny_models import build_causal_lm

    plain = build_causal_lm(tmp_path / "plain", seed=5)  # no chat template
    command = lm_eval_command(workspace, "coe", f"config=coe.yaml,result_cache={tmp_path / 'store'},"
                              f"experts.beta.model_args.pretrained={plain}", str(tmp_path / "out"),
                              "--apply_chat_template")
    result = run_cli(command, cwd=workspace, env=workspace_env(workspace), check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "benchcoe: error:" in line]
    assert len(errors) == 1 and "['beta'] have no chat template" in errors[0], result.stderr[-3000:]
    assert "loading expert" not in result.stderr, "no expert runs before the check"
    assert not list((tmp_path / "store").glob("*.sqlite"))


@pytest.mark.parametrize("scores, words", [
    ({"a": 1.0, "b": 1.0}, "every expert is right on every training document"),
    ({"a": 0.0, "b": 0.0}, "every expert is wrong on every training document"),
])
def test_training_that_cannot_learn_says_so(tmp_path: Path, scores: dict, words: str) -> None:
    for expert, score in scores.items():
        log = tmp_path / expert / "samples_toy_2026-01-01T00-00-00.jsonl"
        log.parent.mkdir()
        log.write_text("".join(json.dumps({"doc_id": i, "exact_match": score, "doc": {"question": f"q{i}",
                                                                                         "subject": "math"}}) + "\n"
                               for i in range(30)))
    result = run_cli(["benchcoe", "train", "--router", "table", "--samples", f"a={tmp_path / 'a'}",
                      "--samples", f"b={tmp_path / 'b'}", "--output", str(tmp_path / "router")],
                     cwd=tmp_path, check=False)
    assert result.returncode != 0 and not (tmp_path / "router").exists()
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot learn" in errors[0] and words in errors[0], result.stderr


@pytest.mark.parametrize("extra, words", [
    (["--routers", ","], "--routers: ',' is not a list of subject,query,cascade"),
    (["--routers", "table"], "--routers: 'table' is not a list of subject,query,cascade"),
    (["--routers", "cascade"], "the MMLU-Pro part runs subject / query"),
    (["--router-dir", "rd", "--routers", "query"], "no mmlu_pro_query router in"),
    (["--router-dir", "nowhere"], "--router-dir"),
    (["--output", "a_file/demo"], "--output: cannot create"),
    (["--limit", "0"], "--limit 0: give a whole number >= 1"),
    (["--limit", "-3"], "--limit -3: give a whole number >= 1"),
])
def test_demo_bad_arguments_are_one_line_before_any_harness_runs(tmp_path: Path, extra: list[str], words: str) -> None:
    (tmp_path / "rd").mkdir()
    (tmp_path / "a_file").write_text("")
    arguments = ["benchcoe", "demo", "--parts", "mmlu_pro", "--limit", "1", *extra]
    if "--output" not in extra:
        arguments += ["--output", "out"]
    result = run_cli(arguments, cwd=tmp_path, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and words in errors[0], result.stderr[-2000:]
    assert "$ " not in result.stdout, "no harness started"


def test_a_router_file_nested_too_deeply_and_a_yaml_error_are_one_line(tmp_path: Path, capsys) -> None:
    from benchcoe_plugins import cli

    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "router.json").write_text("[" * 100000 + "]" * 100000)
    assert cli.main(["inspect", str(tmp_path / "deep")]) == 2
    assert "is corrupt" in capsys.readouterr().err
    TableRouter.from_table({"biology": "a"}, experts=["a"]).save(tmp_path / "router")
    (tmp_path / "bad.yaml").write_text("router: router\nexperts:\n  a: {model: x\n  b: [1,\n")
    result = run_cli([*HARNESSES["lm_eval"], "--model_args", "config=bad.yaml"], cwd=tmp_path, check=False)
    errors = [line for line in result.stderr.splitlines() if "benchcoe: error:" in line]
    assert result.returncode != 0 and len(errors) == 1 and "is not valid YAML" in errors[0], result.stderr[-2000:]
    assert "line 3" in errors[0], "the parser's position stays in the one line"


def test_rerun_warns_when_an_expert_adapter_changed(tmp_path: Path) -> None:
    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.core.provenance import expert_revision
    from benchcoe_plugins.core.rerun_cli import revision_changes

    TableRouter.from_table({"biology": "a"}, experts=["a"]).save(tmp_path / "router")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"adapter-1")
    config = tmp_path / "coe.yaml"
    config.write_text(yaml.safe_dump({"router": "router", "experts": {"a": {"model": "hf", "model_args": {
        "pretrained": str(tmp_path / "model"), "peft": str(tmp_path / "adapter")}}}}))
    record = {"experts": {n: expert_revision(s) for n, s in load_config(config).experts.items()}}
    assert revision_changes(config, record) == []
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"adapter-2")
    (change,) = revision_changes(config, record)
    assert change.startswith("expert a: adapters was")


NO_DATA = ["--samples", "a=no_logs/a", "--samples", "b=no_logs/b"]  # never read: the options are refused first


@pytest.mark.parametrize("argv, words", [
    (["train", *NO_DATA, "--limit", "5"], "--limit 5 takes the first N questions of --records only; --samples"),
    (["train", "--mmmu", "no_mmmu", "--limit", "5"], "--limit 5 takes the first N questions of --records only; --mmmu"),
    (["train", "--records", "no_records", "--limit", "0"], "--limit 0: give a whole number >= 1"),
    (["evaluate", "--router", "no_router", "--records", "no_records", "--limit", "-3"], "--limit -3: give a whole"),
    (["train", *NO_DATA, "--experts", "a", "c"], "--experts ['c']: no --samples NAME=PATH for them"),
    (["train", *NO_DATA, "--split", "no_split.json", "--test-where", "subject=law"],
     "--split names the documents itself, so --test-where would have no effect"),
    (["evaluate", "--router", "no_router", *NO_DATA, "--subset", "in-sample", "--test-where", "subject=law"],
     "--subset in-sample scores every document the router was fitted on, so --test-where would have no effect"),
    (["evaluate", "--router", "no_router", *NO_DATA, "--subset", "in-sample", "--test-source", "records=x"],
     "so --test-source would have no effect"),
    (["evaluate", "--router", "no_router", *NO_DATA, "--subset", "validation", "--test-source", "records=x"],
     "--test-source tests on another record set, so --subset validation would have no effect"),
    (["report", *NO_DATA, "--limit", "3", "--router", "no_router"], "--limit 3 takes the first N questions"),
    (["report", "--run", "no_run", "--experts", "a", "--limit", "3"], "--experts / --limit would have no effect on --run"),
    (["train", *NO_DATA, "--router", "query", "--answer-letters", "--fields", "src"],
     "--answer-letters / --fields shape what a cascade reads; with --router query they would have no effect"),
])
def test_an_option_the_data_would_ignore_is_one_line_before_anything_is_read(tmp_path: Path, capsys, monkeypatch,
                                                                             argv: list[str], words: str) -> None:
    from benchcoe_plugins import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and words in errors[0], errors
    assert not list(tmp_path.iterdir()), "nothing written"
