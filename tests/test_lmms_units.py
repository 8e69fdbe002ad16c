"""In-process checks of the lmms-eval adapter: registration, start-up errors, request
conversion, offline datasets and the shipped MMMU table router (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.routers.table import TableRouter



def test_entry_point_resolves_coemodel_chat_and_simple_and_coe_replay() -> None:
    from lmms_eval.models import MODEL_REGISTRY_V2

    assert MODEL_REGISTRY_V2.get_model_class("coemodel").__name__ == "CoEModelChat"
    assert MODEL_REGISTRY_V2.get_model_class("coemodel", force_simple=True).__name__ == "CoEModelSimple"
    assert MODEL_REGISTRY_V2.resolve("coe_replay").class_path.endswith("replay_model.ReplayLMMS")
    assert "llava_hf" in MODEL_REGISTRY_V2.list_model_names(), "stock models stay registered"


def _config(tmp_path: Path, experts: dict) -> dict:
    TableRouter.from_table({"art": next(iter(experts))}, experts=[next(iter(experts))]).save(tmp_path / "router")
    return {"router": str(tmp_path / "router"), "experts": experts, "result_cache": False}


@pytest.mark.parametrize("experts, message", [
    ({"a": {"model": "no_such_model"}}, "not a model this harness knows"),
    ({"a": {"model": "llava_hf", "modality": "text"}}, "modality text means an lm-eval model"),
    ({"a": {"model": "hf"}}, "not an lmms-eval model"),
    ({"a": {"model": "llava_hf", "model_args": {"lmms_interface": "fancy"}}}, "must be 'simple' or 'chat'"),
])
def test_impossible_configs_fail_before_any_model_loads(tmp_path, experts, message) -> None:
    from benchcoe_plugins.adapters.lmms_eval.coemodel import CoEModelChat

    with pytest.raises(ConfigError, match=message):
        CoEModelChat(config=_config(tmp_path, experts))


def test_impossible_conversions_are_named() -> None:
    from benchcoe_plugins.adapters.lmms_eval.experts import ExpertInterface

    chat = ExpertInterface("v", "chat", "llava_hf", {})
    text = ExpertInterface("t", "text", "hf", {})
    ok, why = chat.answers("loglikelihood", "simple")
    assert not ok and "no loglikelihood" in why and "lmms_interface: simple" in why
    assert text.answers("loglikelihood", "simple")[0]
    ok, why = text.answers("generate_until_multi_round", "chat")
    assert not ok and "multi-round" in why
    assert chat.answers("generate_until_multi_round", "chat")[0]


def test_expert_kind_follows_the_coe_unless_asked(tmp_path) -> None:
    from benchcoe_plugins.adapters.lmms_eval.experts import resolve_interfaces
    from benchcoe_plugins.core.config import load_config

    config = load_config(_config(tmp_path, {
        "a": {"model": "llava_hf"}, "b": {"model": "qwen2_5_vl", "model_args": {"lmms_interface": "simple"}},
        "t": {"model": "hf", "modality": "text"}}), default_modality="vision")
    chat = resolve_interfaces(config.experts, "chat")
    assert {n: i.kind for n, i in chat.items()} == {"a": "chat", "b": "simple", "t": "text"}
    assert "lmms_interface" not in chat["b"].model_args
    assert resolve_interfaces(config.experts, "simple")["a"].kind == "simple"


def test_simple_request_becomes_chat_messages_with_its_images_and_text() -> None:
    from PIL import Image

    from benchcoe_plugins.adapters.lmms_eval import requests as shapes

    picture = Image.new("RGB", (8, 8))

    class Request:
        request_type = "generate_until"
        args = ("What is shown?", {"max_new_tokens": 3}, lambda doc: [picture], 7, "mmstar", "val")

    view = shapes.view(Request(), shapes.SIMPLE)
    ctx, messages, gen_kwargs, doc_id, task, split = shapes.to_chat_args(view)
    turn = messages({})
    assert turn == [{"role": "user", "content": [{"type": "image", "url": picture},
                                                 {"type": "text", "text": "What is shown?"}]}]
    back = shapes.view(type("R", (), {"request_type": "generate_until",
                                      "args": (ctx, messages, gen_kwargs, doc_id, task, split)})(), shapes.CHAT)
    assert shapes.visuals_of(back, {}) == [picture]
    assert shapes.text_gen_kwargs(gen_kwargs) == {"max_gen_toks": 3, "do_sample": False, "until": []}


def test_offline_datasets_keep_each_task_schema(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    from benchcoe_plugins.offline.lmms_datasets import OFFLINE_DATASETS, seed_lmms_datasets

    seed_lmms_datasets(tmp_path, rows=6)
    full = datasets.load_dataset("lmms-lab-encoder/ScienceQA", "ScienceQA-FULL", cache_dir=str(tmp_path))["test"]
    assert any(row["image"] is None for row in full) and any(row["image"] is not None for row in full)
    mmmu = datasets.load_dataset(OFFLINE_DATASETS["mmmu_val"].hub_id, cache_dir=str(tmp_path))["validation"]
    assert mmmu[0]["id"].startswith("validation_") and mmmu[0]["image_1"].size == (64, 48)
    mmstar = datasets.load_dataset("Lin-Chen/MMStar", cache_dir=str(tmp_path))["val"]
    assert {"index", "question", "image", "answer", "category", "l2_category", "meta_info"} == set(mmstar.features)


@pytest.mark.parametrize("response, expected", [
    ("B", "B"), ("(C) 42 apples", "C"), ("D. because", "D"), ("The answer is (A).", "A"),
    ("It costs $7 in total", "B"), ("no idea", None),
])
def test_mmmu_response_letter_extraction(response, expected) -> None:
    from benchcoe_plugins.adapters.lmms_eval.mmmu_records import predicted_letter

    assert predicted_letter(response, ["A", "B", "C", "D"], {"A": "$6", "B": "$7", "C": "$8", "D": "$9"}) == expected
