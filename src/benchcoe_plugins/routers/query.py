"""Query-level router: per question, each expert's chance to answer correctly; argmax.

The paper regresses the multi-hot "which experts were right" vector. Here each expert gets a
calibrated logistic regression P(expert right | question) on text features; the score
blends it with the subject prior (the experts' training accuracy averaged over
P(subject | question)):

    score = blend * P(right) + (1 - blend) * P(subject) @ subject_accuracy

When the top-two margin of the score is below ``margin`` the router defers to the
subject-level choice (``defer_to="subject"``) or the best single expert (``"best"``).
``blend`` and ``margin`` are chosen on validation documents only (given, or split off the
training documents by ``seed``); if no setting beats the best single expert on
validation, the router routes everything to it, so it never does worse there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import RecordsError, RouterFormatError
from benchcoe_plugins.routers.base import RouteDecision, Router
from benchcoe_plugins.routers.encoders import DEFAULT_ENCODER, TextFeatures
from benchcoe_plugins.routers.subject import (
    LinearHead,
    check_training_inputs,
    document_subjects,
    document_texts,
    sigmoid,
    softmax,
)
from benchcoe_plugins.routers.table import best_expert_table

BLEND_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))
MARGIN_QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class QueryRouter(Router):
    kind = "query"

    def __init__(self, backbone: str = "tfidf", encoder: str = DEFAULT_ENCODER, C: float = 1.0,
                 subject_C: float = 10.0, max_features: int = 30000, blend: float | None = None,
                 margin: float | None = None, defer_to: str = "subject", validation_fraction: float = 0.15,
                 seed: int = 0, progress: bool = True) -> None:
        self.backbone = backbone
        self.encoder = encoder
        self.C = C
        self.subject_C = subject_C
        self.max_features = max_features
        self.blend = blend
        self.margin = margin
        self.defer_to = defer_to
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.progress = progress

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, documents: Sequence[RoutingDocument], correct: np.ndarray, experts: Sequence[str],
            subjects: Sequence[str | None] | None = None,
            validation: tuple[Sequence[RoutingDocument], np.ndarray, Sequence[str | None] | None] | None = None,
            ) -> "QueryRouter":
        """Fits on ``documents``; tunes ``blend``/``margin`` (when None) on ``validation``.

        ``validation`` = (documents, correct, subjects); when None and tuning is needed,
        ``validation_fraction`` of ``documents`` is held out by ``seed``.
        """
        if self.defer_to not in ("subject", "best"):
            raise ValueError(f"defer_to must be 'subject' or 'best', not {self.defer_to!r}")
        correct = check_training_inputs(documents, correct, experts)
        subject_names = document_subjects(documents, subjects)
        documents = list(documents)
        needs_tuning = self.blend is None or self.margin is None
        if validation is None and needs_tuning:
            if len(documents) < 20:
                raise RecordsError(f"{len(documents)} documents are too few to hold out validation data; "
                                   f"give blend= and margin= or more documents.")
            order = np.random.default_rng(self.seed).permutation(len(documents))
            n_val = max(1, int(round(len(documents) * self.validation_fraction)))
            val_index, train_index = order[:n_val], order[n_val:]
            validation = ([documents[i] for i in val_index], correct[val_index], [subject_names[i] for i in val_index])
            documents = [documents[i] for i in train_index]
            correct, subject_names = correct[train_index], [subject_names[i] for i in train_index]

        self.experts_ = list(experts)
        self.table_, accuracy = best_expert_table(subject_names, correct, self.experts_)
        self.subjects_ = sorted(self.table_)
        self.subject_accuracy_ = np.array([accuracy[s] for s in self.subjects_], dtype=np.float32)
        self.best_expert_ = self.experts_[int(np.argmax(correct.mean(axis=0)))]
        subject_index = {s: i for i, s in enumerate(self.subjects_)}
        texts = document_texts(documents)
        self.features_ = TextFeatures(self.backbone, self.encoder, self.max_features, progress=self.progress).fit(texts)
        features = self.features_.transform(texts)
        labels = np.array([subject_index[s] for s in subject_names])
        self.subject_head_ = LinearHead.fit_multinomial(features, labels, len(self.subjects_), self.subject_C)
        self.expert_head_ = LinearHead.fit_binary_columns(features, correct, self.C)

        self.blend_, self.margin_, self.mode_ = self.blend, self.margin, "query"
        tuning: dict[str, Any] = {}
        if validation is not None:
            val_docs, val_correct, val_subjects = validation
            val_correct = np.asarray(val_correct, dtype=np.float32)
            tuning = self._tune(val_docs, val_correct)
        self.metadata_ = {"tuning": tuning, "best_expert": self.best_expert_,
                          "subject_accuracy": {s: row.tolist() for s, row in zip(self.subjects_, self.subject_accuracy_.round(6))}}
        return self

    def _tune(self, documents: Sequence[RoutingDocument], correct: np.ndarray) -> dict[str, Any]:
        """Pick blend / margin / mode with the best validation accuracy (never below best single)."""
        if not len(documents):
            raise RecordsError("validation documents are empty; cannot choose blend/margin.")
        proba, prior, subject_pick = self._parts(documents)
        rows = np.arange(len(documents))
        best_index = self.experts_.index(self.best_expert_)
        fallback = subject_pick if self.defer_to == "subject" else np.full(len(documents), best_index)
        candidates: list[tuple[float, float, float]] = []
        blends = BLEND_GRID if self.blend is None else (self.blend,)
        for blend in blends:
            score = blend * proba + (1 - blend) * prior
            top2 = np.sort(score, axis=1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            pick = score.argmax(axis=1)
            margins = (sorted({float(np.quantile(margin, q)) for q in MARGIN_QUANTILES}) if self.margin is None
                       else [self.margin])
            for threshold in margins:
                chosen = np.where(margin < threshold, fallback, pick) if threshold > 0 else pick
                candidates.append((float(correct[rows, chosen].mean()), blend, threshold))
        accuracy, blend, threshold = max(candidates, key=lambda c: c[0])  # first best: smallest blend/margin
        best_single = float(correct[:, best_index].mean())
        subject_level = float(correct[rows, subject_pick].mean())
        self.blend_, self.margin_ = blend, threshold
        self.mode_ = "query" if accuracy > best_single else "best"
        return {"validation_documents": len(documents), "validation_accuracy": round(accuracy, 6),
                "validation_best_single": round(best_single, 6), "validation_subject_level": round(subject_level, 6),
                "blend": blend, "margin": round(threshold, 6), "mode": self.mode_, "candidates": len(candidates)}

    # -- inference ---------------------------------------------------------------------------
    def _parts(self, documents: Sequence[RoutingDocument]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = self.features_.transform(document_texts(documents))
        proba = sigmoid(self.expert_head_.logits(features))
        subject_proba = softmax(self.subject_head_.logits(features))
        prior = subject_proba @ self.subject_accuracy_
        index = {e: i for i, e in enumerate(self.experts_)}
        subject_pick = np.array([index[self.table_[self.subjects_[k]]] for k in subject_proba.argmax(axis=1)], dtype=int)
        return proba, prior, subject_pick

    def expert_proba(self, documents: Sequence[RoutingDocument]) -> np.ndarray:
        """(n_documents, n_experts): P(expert answers correctly | question text)."""
        if not len(documents):
            return np.zeros((0, len(self.experts_)), dtype=np.float32)
        return self._parts(documents)[0]

    def decide(self, documents: Sequence[RoutingDocument]) -> list[RouteDecision]:
        if not len(documents):
            return []
        if self.mode_ == "best":
            return [RouteDecision(self.best_expert_, None, None, "best single expert (validation)") for _ in documents]
        proba, prior, subject_pick = self._parts(documents)
        blend = 1.0 if self.blend_ is None else self.blend_
        score = blend * proba + (1 - blend) * prior
        top2 = np.sort(score, axis=1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
        best_index = self.experts_.index(self.best_expert_)
        decisions = []
        for row, pick, margin, subject_choice in zip(score, score.argmax(axis=1), margins, subject_pick):
            if self.margin_ and margin < self.margin_:
                index = int(subject_choice) if self.defer_to == "subject" else best_index
                reason = f"low margin; deferred to {'subject level' if self.defer_to == 'subject' else 'best single'}"
            else:
                index, reason = int(pick), "query level"
            decisions.append(RouteDecision(self.experts_[index], float(row[index]), None, reason))
        return decisions

    # -- persistence ---------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        tensors = {"subject_accuracy": self.subject_accuracy_, **self.subject_head_.tensors("subject_head"),
                   **self.expert_head_.tensors("expert_head")}
        save_file(tensors, str(folder / "query.safetensors"))
        return {"state": {"weights": "query.safetensors", "features": self.features_.save(folder),
                          "blend": self.blend_, "margin": self.margin_, "mode": self.mode_,
                          "best_expert": self.best_expert_}}

    def _load_state(self, folder: Path, manifest: dict[str, Any]) -> None:
        from safetensors.numpy import load_file

        state = manifest.get("state") or {}
        try:
            tensors = load_file(str(folder / state.get("weights", "query.safetensors")))
            self.features_ = TextFeatures.load(folder, state["features"])
            self.blend_, self.margin_, self.mode_ = state["blend"], state["margin"], state["mode"]
            self.best_expert_ = state["best_expert"]
        except (OSError, KeyError) as error:
            raise RouterFormatError(f"{folder}: query router state incomplete ({error!r}); re-train it.") from None
        self.subject_accuracy_ = tensors["subject_accuracy"]
        self.subject_head_ = LinearHead.from_tensors(tensors, "subject_head")
        self.expert_head_ = LinearHead.from_tensors(tensors, "expert_head")
        if self.expert_head_.coef.shape[0] != len(self.experts_):
            raise RouterFormatError(f"{folder}: weights are for {self.expert_head_.coef.shape[0]} experts, the "
                                    f"manifest lists {len(self.experts_)}.")
