"""Every bad config raises one clear ConfigError naming the key and the fix, before any model loads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.core.errors import ConfigError, RouterFormatError
from benchcoe_plugins.routers.table import TableRouter

KNOWN = ("hf", "vllm", "coe_replay")


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "weights").mkdir()
    TableRouter.from_table({"biology": "a", "law": "b"}, experts=["a", "b"]).save(tmp_path / "router")
    return tmp_path


def write_config(folder: Path, config: dict | str) -> Path:
    path = folder / "coe.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def good_config() -> dict:
    return {
        "router": "router",
        "fallback": "a",
        "experts": {
            "a": {"model": "hf", "model_args": {"pretrained": "./weights"}},
            "b": {"model": "vllm", "model_args": "pretrained=./weights,tensor_parallel_size=2"},
        },
    }


def test_good_config_resolves_paths_and_parses_string_args(workspace: Path) -> None:
    config = load_config(write_config(workspace, good_config()), known_models=lambda: KNOWN)
    assert config.router == (workspace / "router").resolve()
    assert config.experts["a"].model_args["pretrained"] == str((workspace / "weights").resolve())
    assert config.experts["b"].model_args["tensor_parallel_size"] == 2
    assert config.fallback == "a"


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda c: c.update(routr="router"), ["unknown key", "routr", "router"]),
        (lambda c: c["experts"]["a"].update(modle="hf"), ["experts.a", "modle"]),
        (lambda c: c["experts"]["a"].update(model="hff"), ["experts.a.model", "hff", "Known models"]),
        (lambda c: c["experts"]["a"].update(model_args={"pretrained": "./missing"}), ["experts.a.model_args.pretrained", "does not exist"]),
        (lambda c: c["experts"]["a"]["model_args"].update(peft="./no_adapter"), ["experts.a.model_args.peft", "does not exist"]),
        (lambda c: c.update(router="no_such_router"), ["router", "no_such_router"]),
        (lambda c: c.update(fallback="zeta"), ["fallback", "zeta"]),
        (lambda c: c["experts"].pop("b"), ["['b']", "does not define"]),
        (lambda c: c.update(rank_loading="some"), ["rank_loading"]),
        (lambda c: c.update(experts={}), ["experts"]),
        (lambda c: c.update(result_cache=5), ["result_cache", "5", "folder path"]),
        (lambda c: c.update(question_field=3), ["question_field", "task patterns"]),
        (lambda c: c.update(name=[1, 2]), ["name", "[1, 2]", "string"]),
        (lambda c: c.update(routing_log={"a": 1}), ["routing_log", "string"]),
        # written only after the whole evaluation: a folder or a path under a file would lose it all
        (lambda c: c.update(routing_log="weights"), ["routing_log", "is a folder", "routing.jsonl"]),
        (lambda c: c.update(routing_log="coe.yaml/routing.jsonl"), ["routing_log", "which is a file"]),
        (lambda c: c.update(result_cache="coe.yaml"), ["result_cache", "is a file"]),
        (lambda c: c.update(fallback=["a"]), ["fallback", "['a']"]),
        (lambda c: c["experts"]["a"].update(model_args={1: 2}), ["experts.a.model_args", "[1]", "argument names"]),
    ],
)
def test_bad_config_names_the_key(workspace: Path, mutate, words: list[str]) -> None:
    config = good_config()
    mutate(config)
    with pytest.raises(ConfigError) as error:
        load_config(write_config(workspace, config), known_models=lambda: KNOWN)
    for word in words:
        assert word in str(error.value)


def replay_config(workspace: Path, model_args: dict) -> dict:
    (workspace / "recs").mkdir(exist_ok=True)
    for name in ("a", "b"):
        (workspace / "recs" / f"{name}.jsonl").write_text('{"question_id": 1, "pred": "A"}\n')
    config = good_config()
    config["experts"]["b"] = {"model": "coe_replay", "model_args": model_args}
    return config


@pytest.mark.parametrize("model_args, words", [
    ({"records": "recs/b.jsonl", "replai": "answer"}, ["experts.b.model_args", "unknown model_args", "replai"]),
    ({"records": "recs/b.jsonl", "replay": "letters"}, ["experts.b.model_args", "replay='letters'"]),
    ({"records": "recs/b.jsonl", "template": "X"}, ["experts.b.model_args", "{answer}"]),
    ({"records": "recs/b.jsonl", "no_answer": "guess"}, ["experts.b.model_args", "no_answer='guess'"]),
    ({"records": "recs/b.jsonl", "log": "recs"}, ["experts.b.model_args", "exactly one of log"]),
    ({"records": "./recs/*.json"}, ["experts.b.model_args", "records=", "no such file"]),
    ({"log": "recs"}, ["experts.b.model_args", "log=", "no such file"]),  # no file named like a samples file
    ({"records": 5}, ["experts.b.model_args", "records=5", "a path, a glob or a list"]),
    ({"records": "recs/b.jsonl", "key": "idd"}, ["experts.b.model_args", "key fields ['idd']", "question_id"]),
    ({"records": "recs/b.jsonl", "replay": "text"}, ["experts.b.model_args", "replay=text", "generated_text"]),
])
def test_bad_replay_expert_is_a_config_error(workspace: Path, model_args: dict, words: list[str]) -> None:
    """Replay experts' arguments are checked when the config is read, before any expert is built."""
    with pytest.raises(ConfigError) as error:
        load_config(write_config(workspace, replay_config(workspace, model_args)), known_models=lambda: KNOWN)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("records", ["recs/b.jsonl", "./recs/*.jsonl", ["recs/a.jsonl", "recs/b.jsonl"]])
def test_replay_paths_and_globs_resolve_from_the_config_folder(workspace: Path, records, monkeypatch) -> None:
    monkeypatch.chdir(workspace.parent)
    config = load_config(write_config(workspace, replay_config(workspace, {"records": records})),
                         known_models=lambda: KNOWN)
    resolved = config.experts["b"].model_args["records"]
    for path in [resolved] if isinstance(resolved, str) else resolved:
        assert Path(path).is_absolute() and str(path).startswith(str(workspace.resolve()))


def test_malformed_yaml(workspace: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write_config(workspace, "experts: [a, b\nrouter: x"), known_models=lambda: KNOWN)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_hub_id_is_accepted_online_but_not_offline(workspace: Path, monkeypatch) -> None:
    config = good_config()
    config["experts"]["a"]["model_args"] = {"pretrained": "org/model"}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert load_config(write_config(workspace, config), known_models=lambda: KNOWN).experts["a"].model_args["pretrained"] == "org/model"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        load_config(write_config(workspace, config), known_models=lambda: KNOWN)


@pytest.mark.parametrize("damage, words", [
    (lambda p: (p / "router.json").unlink(), "router.json is missing"),
    (lambda p: (p / "router.json").write_text("{not json"), "corrupt"),
    (lambda p: (p / "router.json").write_text((p / "router.json").read_text().replace('"format_version": 1', '"format_version": 99')), "format_version 99"),
])
def test_bad_router_folder(workspace: Path, damage, words: str) -> None:
    damage(workspace / "router")
    with pytest.raises(RouterFormatError, match=words):
        load_config(write_config(workspace, good_config()), known_models=lambda: KNOWN)


def test_overrides_replace_keys(workspace: Path) -> None:
    other = workspace / "other_router"
    TableRouter.from_table({"biology": "b"}, experts=["b"]).save(other)
    config = load_config(write_config(workspace, good_config()), overrides={"router": str(other), "fallback": "b"},
                         known_models=lambda: KNOWN)
    assert config.router == other.resolve() and config.fallback == "b"


def test_config_validation_imports_no_model_code(workspace: Path) -> None:
    """Validation is cheap: it must not import torch or build a model."""
    import subprocess

    script = (
        "import sys\n"
        "from benchcoe_plugins.core.config import load_config\n"
        f"load_config({str(write_config(workspace, good_config()))!r}, known_models=lambda: {KNOWN!r})\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


def test_duplicate_expert_names_are_refused(workspace: Path) -> None:
    text = ("router: router\nexperts:\n  a: {model: hf, model_args: {pretrained: ./weights}}\n"
            "  b: {model: hf, model_args: {pretrained: ./weights}}\n  a: {model: vllm}\n")
    with pytest.raises(ConfigError, match=r"key 'a' appears twice.*line 5"):
        load_config(write_config(workspace, text), known_models=lambda: KNOWN)


def test_non_utf8_config_is_named(workspace: Path) -> None:
    path = workspace / "coe.yaml"
    path.write_bytes(yaml.safe_dump(good_config()).encode() + b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, known_models=lambda: KNOWN)


def test_yaml_alias_bomb_is_refused_before_use(workspace: Path) -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
             f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
             for i in range(8)]
    text = ("router: router\nexperts:\n  a:\n    model: hf\n    model_args:\n      pretrained: ./weights\n"
            "      extra:\n" + "".join(f"        {line}\n" for line in bomb))
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(write_config(workspace, text), known_models=lambda: KNOWN)


def test_huge_config_file_is_refused_unread(workspace: Path) -> None:
    path = workspace / "coe.yaml"
    with path.open("wb") as handle:
        handle.truncate(300 * 1024 * 1024)  # sparse: 300 MB on paper, nothing on disk
    with pytest.raises(ConfigError, match="at most"):
        load_config(path, known_models=lambda: KNOWN)


def test_router_params_of_the_wrong_type_fail_at_load(workspace: Path) -> None:
    import json

    manifest_path = workspace / "router" / "router.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["params"] = {"subject_rules": "x"}
    manifest_path.write_text(json.dumps(manifest))
    from benchcoe_plugins.routers.registry import load_router

    with pytest.raises(RouterFormatError, match=r"params.subject_rules is 'x'"):
        load_router(workspace / "router")


def test_an_override_reaches_an_expert_whose_name_holds_dots() -> None:
    from benchcoe_plugins.core.config import apply_overrides

    raw = {"experts": {"Qwen1.5-7B-Chat": {"model": "hf", "model_args": {"key": "id"}}, "b": {"model": "hf"}}}
    merged = apply_overrides(raw, {"experts.Qwen1.5-7B-Chat.model_args.key": "question_id",
                                   "experts.b.model_args.batch_size": "4", "budget.share": "0.3"})
    assert merged["experts"]["Qwen1.5-7B-Chat"]["model_args"] == {"key": "question_id"}
    assert merged["experts"]["b"]["model_args"] == {"batch_size": 4} and merged["budget"] == {"share": 0.3}
    assert set(merged["experts"]) == {"Qwen1.5-7B-Chat", "b"}
    assert raw["experts"]["Qwen1.5-7B-Chat"]["model_args"] == {"key": "id"}, "the config read from disk is not changed"


def test_an_override_naming_an_expert_the_config_lacks_suggests_the_name() -> None:
    from benchcoe_plugins.core.config import apply_overrides

    raw = {"experts": {"InternVL2-8B": {"model": "hf"}}}
    with pytest.raises(ConfigError, match=r"no expert 'InternVL2-8b' .*did you mean 'InternVL2-8B'\?"):
        apply_overrides(raw, {"experts.InternVL2-8b.model_args.key": "id"})
    added = apply_overrides(raw, {"experts.c.model": "hf", "experts.c.model_args.pretrained": "p"})
    assert added["experts"]["c"] == {"model": "hf", "model_args": {"pretrained": "p"}}, "an expert added whole"


def test_result_cache_and_routing_log_are_read_from_the_config_folder(workspace: Path, monkeypatch) -> None:
    monkeypatch.chdir(workspace.parent)
    config = good_config()
    config.update(result_cache="cache", routing_log="logs/routing.jsonl")
    loaded = load_config(write_config(workspace, config), known_models=lambda: KNOWN)
    assert loaded.result_cache == workspace.resolve() / "cache"
    assert loaded.routing_log == workspace.resolve() / "logs" / "routing.jsonl"
    given = load_config(write_config(workspace, config), overrides={"routing_log": "here.jsonl"},
                        known_models=lambda: KNOWN)
    assert given.routing_log == workspace.parent.resolve() / "here.jsonl", "a command-line value is read from the working folder"


def both_folders_hold_every_path(config_folder: Path, working_folder: Path) -> None:
    for folder in (config_folder, working_folder):
        for name in ("weights", "adapter"):
            (folder / name).mkdir(parents=True)
        TableRouter.from_table({"biology": "a"}, experts=["a", "r"]).save(folder / "router")
        (folder / "records.jsonl").write_text('{"question_id": 1, "pred": "A"}\n')


@pytest.mark.parametrize("where_given", ["file", "override"])
def test_a_relative_path_is_read_from_one_folder_by_where_it_is_given(tmp_path: Path, monkeypatch,
                                                                       where_given: str) -> None:
    """README: paths in the file are read from the config's folder, --model_args overrides from the working
    folder, even where the other folder holds the same name."""
    config_folder, working_folder = tmp_path / "conf", tmp_path / "start"
    both_folders_hold_every_path(config_folder, working_folder)
    monkeypatch.chdir(working_folder)
    settings = {"router": "router", "result_cache": "cache", "routing_log": "routing.jsonl",
                "experts.a.model_args.pretrained": "weights", "experts.a.model_args.peft": "adapter",
                "experts.r.model_args.records": "records.jsonl"}
    config = {"router": "router", "result_cache": "cache", "routing_log": "routing.jsonl", "experts": {
        "a": {"model": "hf", "model_args": {"pretrained": "weights", "peft": "adapter"}},
        "r": {"model": "coe_replay", "model_args": {"records": "records.jsonl"}}}}
    loaded = load_config(write_config(config_folder, config), overrides=settings if where_given == "override" else None,
                         known_models=lambda: KNOWN)
    expected = (working_folder if where_given == "override" else config_folder).resolve()
    assert loaded.router == expected / "router"
    assert loaded.result_cache == expected / "cache" and loaded.routing_log == expected / "routing.jsonl"
    assert loaded.experts["a"].model_args == {"pretrained": str(expected / "weights"), "peft": str(expected / "adapter")}
    assert loaded.experts["r"].model_args["records"] == str(expected / "records.jsonl")


def test_an_override_naming_a_path_only_the_config_folder_holds_is_an_error(tmp_path: Path, monkeypatch) -> None:
    config_folder, working_folder = tmp_path / "conf", tmp_path / "start"
    both_folders_hold_every_path(config_folder, working_folder)
    (config_folder / "weights_only_here").mkdir()
    monkeypatch.chdir(working_folder)
    config = {"router": "router", "experts": {"a": {"model": "hf", "model_args": {"pretrained": "weights"}}}}
    with pytest.raises(ConfigError, match=f"relative paths here are read from {working_folder}"):
        load_config(write_config(config_folder, config), overrides={"experts.a.model_args.pretrained": "./weights_only_here"},
                    known_models=lambda: KNOWN)


@pytest.mark.parametrize("name", ["coe.yaml", "my_coe.yaml"])
def test_the_readme_config_examples_load(tmp_path: Path, monkeypatch, name: str) -> None:
    """The README's config files, as printed there, pass validation (hub ids allowed: nothing downloads)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split(f"# {name}\n", 1)[1].split("```", 1)[0]
    (tmp_path / name).write_text(block)
    for weights in ("models/my-llama", "models/my-phi"):
        (tmp_path / weights).mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    config = load_config(tmp_path / name, known_models=lambda: KNOWN)
    assert set(config.router_expert.values()) == set(config.experts)
    load_config(tmp_path / name, overrides={"router": "mmlu_pro_query"}, known_models=lambda: KNOWN)
