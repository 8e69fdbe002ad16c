"""Query-level router: per question, each expert's chance to answer correctly; argmax.

The paper regresses the multi-hot "which experts were right" vector. Here each expert gets a
calibrated logistic regression P(expert right | question) on text features; the score
blends it with the subject prior (the experts' training accuracy averaged over
P(subject | question)):

    score = blend * P(right) + (1 - blend) * P(subject) @ subject_accuracy

When the top-two margin of the score is below ``margin`` the router defers to the
subject-level choice (``defer_to="subject"``) or the best single expert (``"best"``).
``blend`` and ``margin`` are chosen on validation documents only: the validation split
(given, or split off the training documents by ``seed``), optionally followed by a re-fit on
training + validation (``refit``), or ``folds``-fold cross-validation over training +
validation documents (``tuning="cv"``) before a final fit on all of them. If the chosen
setting does not beat the best single expert on those held-out predictions by more than
``guard_z`` standard errors -- the choice of setting itself cross-fitted, see
:mod:`benchcoe_plugins.routers.guard` -- the router routes everything to it (``guard_z=None``:
no guard). ``text="question+options"``
reads the document's answer options too (the doc's ``options``/``choices`` field).

``head="pairwise"`` estimates each expert's accuracy relative to the best single expert (the
anchor) instead of on its own: P(right) of an expert is P(anchor right) + P(the two disagree) x
(2 P(expert right | they disagree) - 1). The difference of two independently fitted heads is
noisy where it matters (which expert to switch to, and when a cheaper one is as good), while
the disagreement head is fitted on exactly the documents where switching changes the answer.

``head="knn"`` estimates P(right) of each expert as its hit rate among the ``neighbours`` most
similar training questions in sentence-embedding space (``encoder``), shrunk toward its overall
accuracy (:mod:`benchcoe_plugins.routers.neighbours`); the subject prior and the tuning are as for
the other heads.

``prior_field`` (e.g. ``"src"`` for MMLU-Pro, the question's original source) makes the prior
more specific: the experts' training accuracy on the documents sharing the document's value of
that field, shrunk toward the subject prior with the weight of ``FIELD_SHRINK`` documents. A value
not seen in training, or a document without the field, keeps the subject prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import RecordsError, RouterFormatError, brief
from benchcoe_plugins.routers import QUERY_HEADS
from benchcoe_plugins.routers.base import RouteDecision, Router, load_tensors, require_shape, save_tensors
from benchcoe_plugins.routers.encoders import DEFAULT_ENCODER, SentenceEncoder, TextFeatures
from benchcoe_plugins.routers.guard import cross_fitted_hits, cross_validation_splits, guard_verdict
from benchcoe_plugins.routers.neighbours import neighbour_accuracy
from benchcoe_plugins.routers.subject import (
    LinearHead,
    check_training_inputs,
    document_subjects,
    document_texts,
    route_readable,
    sigmoid,
    softmax,
)
from benchcoe_plugins.routers.table import best_expert_table, best_single_index, shrunk_rate


def top_two_margin(score: np.ndarray) -> np.ndarray:
    top2 = np.sort(score, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def route_with_margin(score: np.ndarray, fallback: np.ndarray, threshold: float,
                      margin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(chosen column, deferred): argmax of ``score``, or ``fallback`` where the top-two margin
    (``margin``, computed when not given) is below ``threshold``."""
    deferred = (top_two_margin(score) if margin is None else margin) < threshold
    return np.where(deferred, fallback, score.argmax(axis=1)), deferred


BLEND_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))
MARGIN_QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FIELD_SHRINK = 20.0


def fit_linear_heads(features: Any, correct: np.ndarray, C: float, anchor: int | None = None) -> dict[str, LinearHead]:
    """The linear heads behind P(expert right | features): one logistic regression per expert, and with
    an ``anchor`` expert (``head="pairwise"``) also P(expert and anchor disagree) and P(expert right | they
    disagree)."""
    heads = {"expert_head": LinearHead.fit_binary_columns(features, correct, C)}
    if anchor is not None:
        disagree = correct != correct[:, [anchor]]
        heads["disagree_head"] = LinearHead.fit_binary_columns(features, disagree, C)
        heads["win_head"] = LinearHead.fit_binary_columns(features, correct, C, rows=disagree)
    return heads


def linear_heads_proba(heads: Mapping[str, LinearHead], features: Any, anchor: int | None = None) -> np.ndarray:
    """(n_documents, n_experts) P(right) from :func:`fit_linear_heads`; with an ``anchor``, relative to it:
    P(anchor right) + P(disagree) x (2 P(expert right | disagree) - 1)."""
    proba = sigmoid(heads["expert_head"].logits(features))
    if anchor is None:
        return proba
    disagree = sigmoid(heads["disagree_head"].logits(features))
    wins = sigmoid(heads["win_head"].logits(features))
    relative = proba[:, [anchor]] + disagree * (2 * wins - 1)
    relative[:, anchor] = proba[:, anchor]
    return np.clip(relative, 0.0, 1.0).astype(np.float32)


def field_value(document: RoutingDocument, field: str) -> str | None:
    value = document.doc.get(field) if isinstance(document.doc, Mapping) else None
    return None if value in (None, "") else str(value)


def field_prior(values: Sequence[str | None], cell_values: Sequence[str], cell_hits: np.ndarray,
                cell_counts: np.ndarray, base: np.ndarray, shrink: float = FIELD_SHRINK) -> np.ndarray:
    """Per document: (hits of its field cell + shrink x ``base`` row) / (cell size + shrink); an unknown
    or missing value has an empty cell, so its row is ``base``."""
    index = {value: i for i, value in enumerate(cell_values)}
    rows = np.array([index.get(v, -1) for v in values], dtype=int)
    known = rows >= 0
    hits = np.zeros_like(base)
    counts = np.zeros(len(values), dtype=np.float32)
    hits[known], counts[known] = cell_hits[rows[known]], cell_counts[rows[known]]
    return shrunk_rate(hits, counts[:, None], base, shrink).astype(np.float32)


class QueryRouter(Router):
    kind = "query"

    def __init__(self, backbone: str = "tfidf", encoder: str = DEFAULT_ENCODER, C: float = 1.0,
                 subject_C: float = 10.0, max_features: int = 30000, blend: float | None = None,
                 margin: float | None = None, defer_to: str = "subject", validation_fraction: float = 0.15,
                 seed: int = 0, progress: bool = True, text: str = "question", tuning: str = "validation",
                 folds: int = 5, refit: bool = False, guard_z: float | None = 1.0, head: str = "independent",
                 neighbours: int = 400, prior_field: str | None = None) -> None:
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
        self.text = text
        self.tuning = tuning
        self.folds = folds
        self.refit = refit
        self.guard_z = guard_z
        self.head = head
        self.neighbours = neighbours
        self.prior_field = prior_field

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, documents: Sequence[RoutingDocument], correct: np.ndarray, experts: Sequence[str],
            subjects: Sequence[str | None] | None = None,
            validation: tuple[Sequence[RoutingDocument], np.ndarray, Sequence[str | None] | None] | None = None,
            ) -> "QueryRouter":
        """Fits on ``documents``; chooses ``blend``/``margin`` (when None) on validation data only.

        ``tuning="validation"``: on ``validation`` = (documents, correct, subjects); when None,
        ``validation_fraction`` of ``documents`` is held out by ``seed``. With ``refit=True`` the
        final model is then re-fitted on training + validation documents with the chosen
        setting. ``tuning="cv"``: training and validation documents are pooled; ``folds``-fold
        out-of-fold predictions (folds by ``seed``) choose the setting, and the final model is
        fitted on all of them. Test documents are never passed here.
        """
        if self.defer_to not in ("subject", "best"):
            raise ValueError(f"defer_to must be 'subject' or 'best', not {self.defer_to!r}")
        if self.tuning not in ("validation", "cv"):
            raise ValueError(f"tuning must be 'validation' or 'cv', not {self.tuning!r}")
        if self.head not in QUERY_HEADS:
            raise ValueError(f"head must be one of {QUERY_HEADS}, not {self.head!r}")
        if self.head == "knn" and not (isinstance(self.neighbours, int) and self.neighbours >= 1):
            raise ValueError(f"neighbours must be a whole number >= 1, not {self.neighbours!r}")
        correct = check_training_inputs(documents, correct, experts)
        if self.prior_field is not None and all(field_value(d, self.prior_field) is None for d in documents):
            raise RecordsError(f"prior_field={self.prior_field!r}: no training document has that field; name a "
                               f"field the documents carry (MMLU-Pro: src) or leave it unset.")
        subject_names = document_subjects(documents, subjects)
        documents = list(documents)
        self.experts_ = list(experts)
        needs_tuning = self.blend is None or self.margin is None
        if validation is not None:
            val_docs, val_correct, val_subjects = validation
            val_docs = list(val_docs)
            val_correct = np.asarray(val_correct, dtype=np.float32)
            if val_correct.shape != (len(val_docs), len(self.experts_)):
                raise RecordsError(f"validation correctness has shape {val_correct.shape}; expected "
                                   f"({len(val_docs)}, {len(self.experts_)}).")
            validation = (val_docs, val_correct, document_subjects(val_docs, val_subjects))
        tuning: dict[str, Any] = {}
        if self.tuning == "cv" and needs_tuning:
            if validation is not None:
                documents = documents + validation[0]
                correct = np.vstack([correct, validation[1]])
                subject_names = subject_names + validation[2]
            if len(documents) < max(20, 2 * self.folds):
                raise RecordsError(f"{len(documents)} documents are too few for {self.folds}-fold tuning; "
                                   f"give blend= and margin= or more documents.")
            self._fit_models(documents, correct, subject_names)  # sets best_expert_ on all pooled documents
            tuning = self._tune_cv(documents, correct, subject_names)
            self._calibrate_leave_one_out(documents, tuning)
        else:
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
            self._fit_models(documents, correct, subject_names)
            self.blend_, self.margin_, self.mode_ = self.blend, self.margin, "query"
            if validation is None:
                self._calibrate_leave_one_out(documents, tuning)
            else:
                tuning = self._tune(validation[0], validation[1])
                if self.refit:
                    self._fit_models(documents + validation[0], np.vstack([correct, validation[1]]),
                                     subject_names + validation[2])
                    tuning["refit_documents"] = len(documents) + len(validation[0])
                    self._calibrate_leave_one_out(documents + validation[0], tuning)
        self.metadata_ = {"tuning": tuning, "best_expert": self.best_expert_,
                          "subject_accuracy": {s: row.tolist() for s, row in zip(self.subjects_, self.subject_accuracy_.round(6))}}
        return self

    def _fit_models(self, documents: Sequence[RoutingDocument], correct: np.ndarray, subject_names: Sequence[str]) -> None:
        self.table_, accuracy = best_expert_table(subject_names, correct, self.experts_)
        self.subjects_ = sorted(self.table_)
        self.subject_accuracy_ = np.array([accuracy[s] for s in self.subjects_], dtype=np.float32)
        self.best_expert_ = self.experts_[best_single_index(correct)]
        subject_index = {s: i for i, s in enumerate(self.subjects_)}
        texts = document_texts(documents, self.text)
        self.features_ = TextFeatures(self.backbone, self.encoder, self.max_features, progress=self.progress).fit(texts)
        features = self.features_.transform(texts)
        labels = np.array([subject_index[s] for s in subject_names])
        if self.prior_field is not None:
            self._fit_field_cells(documents, correct)
        self.subject_head_ = LinearHead.fit_multinomial(features, labels, len(self.subjects_), self.subject_C)
        if self.head == "knn":
            self.neighbour_vectors_ = self._sentences().transform(texts)
            self.neighbour_hits_ = np.asarray(correct, dtype=np.float32)
            return
        self.heads_ = fit_linear_heads(features, correct, self.C, self._anchor())

    def _fit_field_cells(self, documents: Sequence[RoutingDocument], correct: np.ndarray) -> None:
        values = np.array([field_value(d, self.prior_field) or "" for d in documents])
        known = values != ""
        cells, cell_of = np.unique(values[known], return_inverse=True)  # sorted, as the stored value list
        self.cell_values_ = cells.tolist()
        self.cell_hits_ = np.zeros((len(cells), correct.shape[1]), dtype=np.float32)
        np.add.at(self.cell_hits_, cell_of, np.asarray(correct, dtype=np.float32)[known])
        self.cell_counts_ = np.bincount(cell_of, minlength=len(cells)).astype(np.float32)

    def _calibrate_leave_one_out(self, documents: list[RoutingDocument], tuning: dict[str, Any]) -> None:
        """kNN head: budgets calibrate on the final model's scores of its own fit documents, each scored
        without itself among its neighbours. Scores from a model fitted on fewer documents (validation
        scores before a refit, or out-of-fold scores) sit apart from the final model's, and a budget
        calibrated on them misses on new documents. The linear heads keep their held-out scores."""
        if self.head != "knn":
            return
        proba, prior, _ = self._parts(documents, leave_one_out=True)
        self.calibration_scores_ = self._blended(proba, prior).astype(np.float32)
        tuning["calibration"] = f"leave-one-out scores of the final model's {len(documents)} fit documents"

    def _tune_cv(self, documents: list[RoutingDocument], correct: np.ndarray, subject_names: list[str]) -> dict[str, Any]:
        """Out-of-fold scores of ``folds`` models, each fitted without its fold, choose the setting."""
        n = len(documents)
        proba = np.zeros((n, len(self.experts_)), dtype=np.float32)
        prior = np.zeros_like(proba)
        subject_pick = np.zeros(n, dtype=int)
        params = {**self.get_params(), "tuning": "validation", "refit": False, "blend": 0.0, "margin": 0.0,
                  "progress": False}
        for inside, fold in cross_validation_splits(n, self.folds, self.seed):
            model = QueryRouter(**params)
            model.experts_ = list(self.experts_)
            model._fit_models([documents[i] for i in inside], correct[inside], [subject_names[i] for i in inside])
            fold_proba, fold_prior, fold_pick = model._parts([documents[i] for i in fold])
            proba[fold], prior[fold], subject_pick[fold] = fold_proba, fold_prior, fold_pick
        tuning = self._choose(proba, prior, subject_pick, correct)
        tuning.update({"method": f"{self.folds}-fold cross-validation on training + validation documents",
                       "refit_documents": n})
        return tuning

    def _tune(self, documents: Sequence[RoutingDocument], correct: np.ndarray) -> dict[str, Any]:
        """Pick blend / margin / mode with the best validation accuracy (never below best single)."""
        if not len(documents):
            raise RecordsError("validation documents are empty; cannot choose blend/margin.")
        proba, prior, subject_pick = self._parts(documents)
        return {**self._choose(proba, prior, subject_pick, correct), "method": "validation documents"}

    def _choose(self, proba: np.ndarray, prior: np.ndarray, subject_pick: np.ndarray,
                correct: np.ndarray) -> dict[str, Any]:
        """The blend / margin with the best held-out accuracy, then the guard (see :mod:`.guard`)."""
        rows = np.arange(len(correct))
        best_index = self.experts_.index(self.best_expert_)
        fallback = self._deferral(subject_pick)
        settings: list[tuple[float, float]] = []
        hits = []
        for blend in (BLEND_GRID if self.blend is None else (self.blend,)):
            score = blend * proba + (1 - blend) * prior
            margin = top_two_margin(score)
            thresholds = (sorted({float(np.quantile(margin, q)) for q in MARGIN_QUANTILES}) if self.margin is None
                          else [self.margin])
            for threshold in thresholds:
                settings.append((blend, threshold))
                hits.append(correct[rows, route_with_margin(score, fallback, threshold, margin)[0]])
        candidate_hits = np.array(hits)
        chosen = int(np.argmax(candidate_hits.mean(axis=1)))  # first best: smallest blend / margin
        self.blend_, self.margin_ = settings[chosen]
        # held-out expected accuracies: what a cost budget is calibrated on (routers/cost.py)
        self.calibration_scores_ = self._blended(proba, prior).astype(np.float32)
        best_hits = correct[:, best_index]
        tuning: dict[str, Any] = {
            "validation_documents": len(correct), "validation_accuracy": round(float(candidate_hits[chosen].mean()), 6),
            "validation_best_single": round(float(best_hits.mean()), 6),
            "validation_subject_level": round(float(correct[rows, subject_pick].mean()), 6),
            "blend": self.blend_, "margin": round(self.margin_, 6), "candidates": len(settings)}
        if self.guard_z is None:
            self.mode_ = "query"
            return tuning
        # The chosen setting's own accuracy is the best of many and so optimistic: the guard scores the choice too.
        honest = cross_fitted_hits(candidate_hits, self.folds, self.seed + 1)
        verdict = guard_verdict(honest, best_hits, self.guard_z)
        self.mode_ = "query" if verdict["routes"] else "best"
        return {**tuning, "guard": {**verdict, "cross_fitted_accuracy": round(float(honest.mean()), 6)},
                "mode": self.mode_}

    # -- inference ---------------------------------------------------------------------------
    def _parts(self, documents: Sequence[RoutingDocument],
               leave_one_out: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(right), subject prior and subject-level pick per document. ``leave_one_out`` (kNN head):
        ``documents`` are the fit documents, in fit order, each scored without itself as a neighbour."""
        texts = document_texts(documents, self.text)
        features = self.features_.transform(texts)
        if self.head == "knn":
            proba = neighbour_accuracy(self._sentences().transform(texts), self.neighbour_vectors_,
                                       self.neighbour_hits_, self.neighbours, leave_one_out=leave_one_out)
        else:
            proba = linear_heads_proba(self.heads_, features, self._anchor())
        subject_proba = softmax(self.subject_head_.logits(features))
        prior = subject_proba @ self.subject_accuracy_
        if self.prior_field is not None:
            prior = field_prior([field_value(d, self.prior_field) for d in documents], self.cell_values_,
                                self.cell_hits_, self.cell_counts_, prior)
        index = {e: i for i, e in enumerate(self.experts_)}
        subject_pick = np.array([index[self.table_[self.subjects_[k]]] for k in subject_proba.argmax(axis=1)], dtype=int)
        return proba, prior, subject_pick

    def _sentences(self) -> SentenceEncoder:
        """The knn head's encoder (one per router; its vectors are shared by every encoder of the model)."""
        if getattr(self, "sentences_", None) is None:
            self.sentences_ = SentenceEncoder(self.encoder, progress=self.progress)
        return self.sentences_

    def _anchor(self) -> int | None:
        return self.experts_.index(self.best_expert_) if self.head == "pairwise" else None

    def _deferral(self, subject_pick: np.ndarray) -> np.ndarray:
        """Where a low-margin question goes: its subject-level expert or the best single expert."""
        if self.defer_to == "subject":
            return subject_pick
        return np.full(len(subject_pick), self.experts_.index(self.best_expert_))

    def expert_proba(self, documents: Sequence[RoutingDocument]) -> np.ndarray:
        """(n_documents, n_experts): P(expert answers correctly | question text)."""
        if not len(documents):
            return np.zeros((0, len(self.experts_)), dtype=np.float32)
        return self._parts(documents)[0]

    def expected_accuracy(self, documents: Sequence[RoutingDocument]) -> np.ndarray:
        """(n_documents, n_experts): the routing score, blended P(right) and subject prior."""
        if not len(documents):
            return np.zeros((0, len(self.experts_)), dtype=np.float32)
        proba, prior, _ = self._parts(documents)
        return self._blended(proba, prior)

    def _blended(self, proba: np.ndarray, prior: np.ndarray) -> np.ndarray:
        blend = 1.0 if self.blend_ is None else self.blend_
        return blend * proba + (1 - blend) * prior

    def calibration_scores(self) -> np.ndarray:
        """``expected_accuracy`` of documents the scoring model did not fit (validation or out-of-fold; kNN
        head: its fit documents, each left out of its own neighbours)."""
        scores = getattr(self, "calibration_scores_", None)
        if scores is None:
            from benchcoe_plugins.routers.cost import calibration_missing

            raise calibration_missing(self.metadata_.get("name", self.kind))
        return scores

    def decide(self, documents: Sequence[RoutingDocument]) -> list[RouteDecision]:
        return route_readable(documents, self._decide_readable)

    def _decide_readable(self, documents: list[RoutingDocument]) -> list[RouteDecision]:
        if self.mode_ == "best":
            return [RouteDecision(self.best_expert_, None, None, "best single expert (guard)") for _ in documents]
        proba, prior, subject_pick = self._parts(documents)
        score = self._blended(proba, prior)
        chosen, deferred = route_with_margin(score, self._deferral(subject_pick), self.margin_ or 0.0)
        deferred_reason = f"low margin; deferred to {'subject level' if self.defer_to == 'subject' else 'best single'}"
        return [RouteDecision(self.experts_[index], float(row[index]), None, deferred_reason if low else "query level")
                for row, index, low in zip(score, chosen.tolist(), deferred.tolist())]

    # -- persistence ---------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> dict[str, Any]:
        tensors = {"subject_accuracy": self.subject_accuracy_, **self.subject_head_.tensors("subject_head")}
        if self.head == "knn":
            tensors.update({"neighbour_vectors": self.neighbour_vectors_,
                            "neighbour_hits": self.neighbour_hits_.astype(np.uint8)})
        else:
            for name, head in self.heads_.items():
                tensors.update(head.tensors(name))
        if getattr(self, "calibration_scores_", None) is not None:
            tensors["calibration_scores"] = self.calibration_scores_
        state = {"weights": "query.safetensors", "features": self.features_.save(folder), "blend": self.blend_,
                 "margin": self.margin_, "mode": self.mode_, "best_expert": self.best_expert_}
        if self.prior_field is not None:
            tensors.update({"cell_hits": self.cell_hits_, "cell_counts": self.cell_counts_})
            state["cell_values"] = list(self.cell_values_)
        save_tensors(tensors, folder / "query.safetensors")
        return {"state": state}

    def _load_state(self, folder: Path, manifest: dict[str, Any]) -> None:
        state = manifest.get("state") or {}
        try:
            tensors = load_tensors(folder, state.get("weights", "query.safetensors"))
            self.features_ = TextFeatures.load(folder, state["features"])
            self.blend_, self.margin_, self.mode_ = state["blend"], state["margin"], state["mode"]
            self.best_expert_ = state["best_expert"]
        except (OSError, KeyError) as error:
            raise RouterFormatError(f"{folder}: query router state incomplete ({brief(error)}); re-train it.") from None
        self.subject_accuracy_ = tensors["subject_accuracy"]
        self.calibration_scores_ = tensors.get("calibration_scores")
        if self.calibration_scores_ is not None:  # one row per calibration document, one column per expert
            shape = self.calibration_scores_.shape
            require_shape(folder, "calibration_scores", shape, shape[:1] + (len(self.experts_),))
        self.subject_head_ = LinearHead.from_tensors(tensors, "subject_head")
        try:
            if self.head == "knn":
                self.neighbour_vectors_ = np.asarray(tensors["neighbour_vectors"], dtype=np.float32)  # stored as float32: no copy
                self.neighbour_hits_ = tensors["neighbour_hits"].astype(np.float32)
                n_experts = self.neighbour_hits_.shape[1]
            else:
                names = ("expert_head", "disagree_head", "win_head") if self.head == "pairwise" else ("expert_head",)
                self.heads_ = {name: LinearHead.from_tensors(tensors, name) for name in names}
                n_experts = self.heads_["expert_head"].coef.shape[0]
            if self.prior_field is not None:
                self.cell_values_ = [str(v) for v in state["cell_values"]]
                self.cell_hits_, self.cell_counts_ = tensors["cell_hits"], tensors["cell_counts"]
                if self.cell_hits_.shape != (len(self.cell_values_), len(self.experts_)):
                    raise RouterFormatError(f"{folder}: {self.prior_field} cells have shape {self.cell_hits_.shape}, "
                                            f"not ({len(self.cell_values_)}, {len(self.experts_)}); re-train it.")
        except KeyError as error:
            raise RouterFormatError(f"{folder}: the {self.head} head's weights are missing ({error}); re-train it.") from None
        if n_experts != len(self.experts_):
            raise RouterFormatError(f"{folder}: weights are for {n_experts} experts, the manifest lists "
                                    f"{len(self.experts_)}.")
        require_shape(folder, "subject_accuracy", self.subject_accuracy_.shape, (len(self.subjects_), len(self.experts_)))
        require_shape(folder, "subject_head", self.subject_head_.coef.shape[:1], (len(self.subjects_),))
        if self.head not in QUERY_HEADS or self.defer_to not in ("subject", "best"):
            raise RouterFormatError(f"{folder}: params head={self.head!r} / defer_to={self.defer_to!r} are not ones "
                                    f"this version knows ({QUERY_HEADS}; subject, best); re-train the router.")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.blend_, self.margin_)):
            raise RouterFormatError(f"{folder}: state blend={self.blend_!r} / margin={self.margin_!r} must be numbers; "
                                    f"re-train the router.")
        if self.mode_ not in ("query", "best") or self.best_expert_ not in self.experts_:
            raise RouterFormatError(f"{folder}: router state has mode {self.mode_!r} / best expert "
                                    f"{self.best_expert_!r}; re-train the router.")
