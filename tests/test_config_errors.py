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
        (lambda c: c.update(router="no_such_router"), ["router", "no_such_router"]),
        (lambda c: c.update(fallback="zeta"), ["fallback", "zeta"]),
        (lambda c: c["experts"].pop("b"), ["['b']", "does not define"]),
        (lambda c: c.update(rank_loading="some"), ["rank_loading"]),
        (lambda c: c.update(experts={}), ["experts"]),
    ],
)
def test_bad_config_names_the_key(workspace: Path, mutate, words: list[str]) -> None:
    config = good_config()
    mutate(config)
    with pytest.raises(ConfigError) as error:
        load_config(write_config(workspace, config), known_models=lambda: KNOWN)
    for word in words:
        assert word in str(error.value)


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
