"""Subject-level router (the paper's): predict the subject from the question text, then a
subject -> expert table (each expert's per-subject accuracy on the training split) picks
the expert.

Backbones: ``tfidf`` / ``embedding`` / ``tfidf+embedding`` (a multinomial logistic-regression
head, seconds on CPU) or ``finetune`` (fine-tunes a local BERT-family folder, the paper's
setting; the model is saved inside the checkpoint under ``classifier/``).

Guard (``guard_z``, see :mod:`benchcoe_plugins.routers.guard`): subject-level routing is kept
only when it beats the best single expert by more than ``guard_z`` standard errors on
held-out documents -- ``folds``-fold cross-validation of the whole router (classifier and
table) for the linear heads, the validation documents for ``finetune``; otherwise every
question goes to the best single expert.

Per-subject shrinkage (``subject_prior``): with few documents per subject the raw per-subject
argmax is mostly noise, so each expert's per-subject accuracy can be shrunk toward its global
accuracy (:func:`benchcoe_plugins.routers.table.shrunk_accuracy`); a subject then leaves the
best single expert only on clear evidence. ``subject_prior="cv"`` picks the prior strength from
``PRIOR_GRID`` on the same held-out hits the guard reads, and the guard then scores the
*choosing* (:func:`~benchcoe_plugins.routers.guard.cross_fitted_hits`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchcoe_plugins.core.documents import RoutingDocument, normalize_subject, subject_of
from benchcoe_plugins.core.errors import RecordsError, RouterFormatError
from benchcoe_plugins.routers.base import RouteDecision, Router, load_tensors, require_shape, save_tensors
from benchcoe_plugins.routers.encoders import DEFAULT_ENCODER, FineTunedModel, TextFeatures, fine_tune_classifier
from benchcoe_plugins.routers.guard import cross_fitted_hits, cross_validation_splits, guard_verdict
from benchcoe_plugins.routers.table import best_expert_table, best_single_index

logger = logging.getLogger(__name__)

PRIOR_GRID = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, float("inf"))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


class LinearHead:
    """A fitted linear model as plain arrays: ``logits = X @ coef.T + intercept``."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)

    @classmethod
    def fit_multinomial(cls, features: Any, labels: np.ndarray, n_classes: int, C: float,
                        sample_weight: np.ndarray | None = None) -> "LinearHead":
        """Softmax regression over ``n_classes`` (classes absent from ``labels`` get -inf-like bias)."""
        from sklearn.linear_model import LogisticRegression

        present = np.unique(labels)
        coef = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
        intercept = np.full(n_classes, -30.0, dtype=np.float32)
        if len(present) == 1:
            intercept[present[0]] = 0.0
            return cls(coef, intercept)
        model = LogisticRegression(C=C, max_iter=3000).fit(features, labels, sample_weight=sample_weight)
        if len(present) == 2:  # sklearn stores one row for two classes: softmax([0, z]) == sigmoid(z)
            intercept[present] = [0.0, float(model.intercept_[0])]
            coef[present[1]] = model.coef_[0]
        else:
            coef[present] = model.coef_
            intercept[present] = model.intercept_
        return cls(coef, intercept)

    @classmethod
    def fit_binary_columns(cls, features: Any, targets: np.ndarray, C: float,
                           rows: np.ndarray | None = None) -> "LinearHead":
        """One logistic regression per column of 0/1 ``targets``: P(column = 1), each fitted on the
        documents where its column of the boolean mask ``rows`` is true (default: all)."""
        from sklearn.linear_model import LogisticRegression

        targets = np.asarray(targets)
        coef = np.zeros((targets.shape[1], features.shape[1]), dtype=np.float32)
        intercept = np.zeros(targets.shape[1], dtype=np.float32)
        for column in range(targets.shape[1]):
            inside = np.flatnonzero(rows[:, column]) if rows is not None else slice(None)
            y = targets[inside, column]
            if not len(y):  # no document to learn from: even odds
                continue
            if y.min() == y.max():  # always right / always wrong: a constant
                intercept[column] = 30.0 if y[0] else -30.0
                continue
            model = LogisticRegression(C=C, max_iter=3000).fit(features[inside], y)
            coef[column] = model.coef_[0]
            intercept[column] = model.intercept_[0]
        return cls(coef, intercept)

    def logits(self, features: Any) -> np.ndarray:
        return np.asarray(features @ self.coef.T) + self.intercept

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.coef": self.coef, f"{prefix}.intercept": self.intercept}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str) -> "LinearHead":
        try:
            return cls(tensors[f"{prefix}.coef"], tensors[f"{prefix}.intercept"])
        except KeyError as missing:
            raise RouterFormatError(f"router weights lack tensor {missing}; re-train the router.") from None


TEXT_MODES = ("question", "question+options")


def document_texts(documents: Sequence[RoutingDocument], mode: str = "question") -> list[str]:
    """What a text router reads: the routed text, plus (``"question+options"``) the answer
    options from the document's own ``options``/``choices`` field when it has one -- the same
    at training time (records) and at run time (the harness's doc)."""
    if mode not in TEXT_MODES:
        raise ValueError(f"unknown text mode {mode!r}; choose one of {TEXT_MODES}")
    texts = [d.text or "" for d in documents]
    if mode == "question+options":
        for i, d in enumerate(documents):
            options = None
            if isinstance(d.doc, Mapping):
                options = next((found for k in ("options", "choices") if (found := option_list(d.doc.get(k)))), None)
            if options:
                texts[i] = texts[i] + "\n" + "\n".join(str(o) for o in options)
    return texts


def option_list(value: Any) -> list[Any] | None:
    """A doc's answer options: a list, or a list written as a string (MMMU's datasets store
    ``"['a', 'b']"``), parsed as a Python literal only; anything else is None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        import ast

        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        return list(parsed) if isinstance(parsed, (list, tuple)) else None
    return None


def blank_text(documents: Sequence[RoutingDocument]) -> list[bool]:
    """Documents without question text (image-only questions, as in MMMU-Pro's vision setting):
    a text router cannot place them."""
    return [not (d.text or "").strip() for d in documents]


UNREADABLE = RouteDecision(None, None, None, "no question text to read")


def route_readable(documents: Sequence[RoutingDocument],
                   decide: Callable[[list[RoutingDocument]], list[RouteDecision]]) -> list[RouteDecision]:
    """``decide`` over the documents with question text, in order; the others get no expert, so
    the CoE's fallback answers them."""
    blank = blank_text(documents)
    readable = [d for d, empty in zip(documents, blank) if not empty]
    placed = iter(decide(readable) if readable else [])
    return [UNREADABLE if empty else next(placed) for empty in blank]


def document_subjects(documents: Sequence[RoutingDocument], subjects: Sequence[str | None] | None) -> list[str]:
    """Given subjects (normalized) or each document's own subject field."""
    if subjects is None:
        subjects = [subject_of(d.task, d.doc) for d in documents]
    if len(subjects) != len(documents):
        raise RecordsError(f"{len(subjects)} subjects for {len(documents)} documents")
    missing = [d.key for d, s in zip(documents, subjects) if s in (None, "")]
    if missing:
        raise RecordsError(f"{len(missing)} documents have no subject (first: {missing[0]}). Give subjects "
                           f"explicitly, or use documents with a subject/category field.")
    return [normalize_subject(s) for s in subjects]  # type: ignore[arg-type]


def check_training_inputs(documents: Sequence[RoutingDocument], correct: np.ndarray,
                          experts: Sequence[str]) -> np.ndarray:
    correct = np.asarray(correct, dtype=np.float32)
    if len(experts) < 2:
        raise RecordsError(f"a router needs at least two experts to choose between; got {list(experts)}.")
    if len(set(experts)) != len(experts):
        raise RecordsError(f"expert names repeat: {list(experts)}")
    if not len(documents):
        raise RecordsError("no training documents: the records or sample logs are empty.")
    if correct.shape != (len(documents), len(experts)):
        raise RecordsError(f"correctness matrix has shape {correct.shape}; expected "
                           f"({len(documents)} documents, {len(experts)} experts).")
    return correct


class SubjectRouter(Router):
    """Question text -> subject (classifier) -> expert (table)."""

    kind = "subject"

    def __init__(self, backbone: str = "tfidf", encoder: str = DEFAULT_ENCODER, C: float = 10.0,
                 max_features: int = 30000, epochs: int = 3, lr: float = 2e-5, batch_size: int = 16,
                 max_length: int = 512, seed: int = 0, progress: bool = True, text: str = "question",
                 guard_z: float | None = 1.0, folds: int = 5, subject_prior: float | str = 0.0) -> None:
        self.backbone = backbone
        self.encoder = encoder
        self.C = C
        self.max_features = max_features
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.progress = progress
        self.text = text
        self.guard_z = guard_z
        self.folds = folds
        self.subject_prior = subject_prior
        self._warned_subjects: set[str] = set()

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, documents: Sequence[RoutingDocument], correct: np.ndarray, experts: Sequence[str],
            subjects: Sequence[str | None] | None = None,
            validation: tuple[Sequence[RoutingDocument], np.ndarray, Sequence[str | None] | None] | None = None,
            ) -> "SubjectRouter":
        """``correct``: (n_documents, n_experts) 0/1; ``subjects`` default to the documents' own field.

        ``validation`` = (documents, correct, subjects): early stopping of ``finetune`` and its guard.
        """
        correct = check_training_inputs(documents, correct, experts)
        priors = self._prior_candidates()
        labels_text = document_subjects(documents, subjects)
        self.experts_ = list(experts)
        self.best_expert_ = self.experts_[best_single_index(correct)]
        self.mode_ = "subject"
        self.table_, accuracy = best_expert_table(labels_text, correct, self.experts_)
        self.subjects_ = sorted(self.table_)
        self.subject_accuracy_ = np.array([accuracy[s] for s in self.subjects_], dtype=np.float32)
        index = {s: i for i, s in enumerate(self.subjects_)}
        labels = np.array([index[s] for s in labels_text])
        texts = document_texts(documents, self.text)
        self._finetuned: FineTunedModel | None = None
        self._finetune_dir: Path | None = None
        if self.backbone == "finetune":
            import shutil
            import tempfile
            import weakref

            scratch = tempfile.mkdtemp(prefix="benchcoe-subject-")
            # The fine-tuned weights live here until save() copies them; gone with the router.
            weakref.finalize(self, shutil.rmtree, scratch, ignore_errors=True)
            self._finetune_dir = Path(scratch) / "classifier"
            val_texts, val_labels = (), None
            if validation is not None:
                val_docs, _, val_subjects = validation
                val_texts = document_texts(val_docs, self.text)
                val_labels = np.array([index.get(s, -1) for s in document_subjects(val_docs, val_subjects)])
            summary = fine_tune_classifier(self.encoder, texts, labels, problem="classification",
                                           output_dir=self._finetune_dir, val_texts=val_texts, val_targets=val_labels,
                                           epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                                           max_length=self.max_length, seed=self.seed, progress=self.progress,
                                           num_labels=max(2, len(self.subjects_)))
            self._finetuned = FineTunedModel(self._finetune_dir, max_length=self.max_length)
            self.features_ = None
            self.head_ = None
            self.metadata_ = {"fine_tuning": summary}
        else:
            self.features_ = TextFeatures(self.backbone, self.encoder, self.max_features, progress=self.progress).fit(texts)
            self.head_ = LinearHead.fit_multinomial(self.features_.transform(texts), labels, len(self.subjects_), self.C)
            self.metadata_ = {}
        self.metadata_["subject_accuracy"] = {s: row.tolist() for s, row in zip(self.subjects_, self.subject_accuracy_.round(6))}
        self.metadata_["best_expert"] = self.best_expert_
        if self.guard_z is None and len(priors) == 1:
            self._set_table(labels_text, correct, priors[0])
            return self
        evidence = self._held_out_hits(documents, correct, labels_text, validation, priors)
        if "skipped" in evidence:
            if len(priors) > 1:
                raise RecordsError(f"subject_prior='cv' needs held-out evidence, but {evidence['skipped']}; "
                                   f"give subject_prior a number instead.")
            self._set_table(labels_text, correct, priors[0])
            self.metadata_["guard"] = {**evidence, "mode": self.mode_}
            return self
        candidate_hits = evidence.pop("candidate_hits")
        totals = candidate_hits.sum(axis=1)
        chosen = len(priors) - 1 - int(np.argmax(totals[::-1]))  # ties -> the stronger prior
        self._set_table(labels_text, correct, priors[chosen])
        if len(priors) > 1:
            self.metadata_["subject_prior_cv"] = {"chosen": priors[chosen], "method": evidence["method"],
                                                  "held_out_accuracy": {str(p): round(float(t) / candidate_hits.shape[1], 6)
                                                                        for p, t in zip(priors, totals)}}
            routed = cross_fitted_hits(candidate_hits, self.folds, self.seed)
        else:
            routed = candidate_hits[0]
        if self.guard_z is not None:
            guard = {"method": evidence["method"], **guard_verdict(routed, evidence["best_single"], self.guard_z)}
            self.mode_ = "subject" if guard["routes"] else "best"
            self.metadata_["guard"] = {**guard, "mode": self.mode_}
        return self

    def _prior_candidates(self) -> tuple[float, ...]:
        if self.subject_prior == "cv":
            return PRIOR_GRID
        try:
            prior = float(self.subject_prior)
        except (TypeError, ValueError):
            prior = -1.0
        if not prior >= 0:
            raise ValueError(f"subject_prior must be a number >= 0 (inf allowed) or 'cv'; got {self.subject_prior!r}")
        return (prior,)

    def _set_table(self, subjects: list[str], correct: np.ndarray, prior: float) -> None:
        """The subject -> expert table at this prior strength (the raw accuracy rows stay as they are)."""
        self.table_, _ = best_expert_table(subjects, correct, self.experts_, prior=prior)
        if prior > 0:
            self.metadata_["table_prior"] = prior

    def _held_out_hits(self, documents: Sequence[RoutingDocument], correct: np.ndarray, subjects: list[str],
                       validation: tuple[Sequence[RoutingDocument], np.ndarray, Sequence[str | None] | None] | None,
                       priors: Sequence[float]) -> dict[str, Any]:
        """Hits of subject-level routing at each prior (``candidate_hits``, priors x documents) and of
        the best single expert (``best_single``) on documents the deciding model did not train on
        (module docstring); ``{"skipped": why}`` when there are none."""
        if self.backbone == "finetune":
            if validation is None:
                return {"skipped": "fine-tuning is not cross-validated; pass validation documents to guard it"}
            val_docs, val_correct, _ = validation
            val_correct = np.asarray(val_correct, dtype=float)
            hits = self._table_hits(self._predicted_subjects(val_docs), val_correct, subjects, correct, priors)
            best = self.experts_.index(self.best_expert_)
            return {"method": "validation documents", "candidate_hits": hits, "best_single": val_correct[:, best]}
        n = len(documents)
        if n < max(20, 2 * self.folds):
            return {"skipped": f"{n} documents are too few for {self.folds}-fold cross-validation"}
        params = {**self.get_params(), "guard_z": None, "progress": False, "subject_prior": 0.0}
        candidate_hits = np.zeros((len(priors), n))
        best_single = np.zeros(n)
        for inside, fold in cross_validation_splits(n, self.folds, self.seed):
            model = SubjectRouter(**params).fit([documents[i] for i in inside], correct[inside], self.experts_,
                                                subjects=[subjects[i] for i in inside])
            candidate_hits[:, fold] = self._table_hits(model._predicted_subjects([documents[i] for i in fold]),
                                                       correct[fold], [subjects[i] for i in inside], correct[inside],
                                                       priors)
            best_single[fold] = correct[fold, self.experts_.index(model.best_expert_)]
        return {"method": f"{self.folds}-fold cross-validation", "candidate_hits": candidate_hits,
                "best_single": best_single}

    def _table_hits(self, predicted: Sequence[str], held_out_correct: np.ndarray, fit_subjects: Sequence[str],
                    fit_correct: np.ndarray, priors: Sequence[float]) -> np.ndarray:
        """(priors, held-out documents): hit of the expert each prior's table (built from the fit
        documents) gives the predicted subject."""
        column = {e: i for i, e in enumerate(self.experts_)}
        rows = np.arange(len(predicted))
        hits = np.zeros((len(priors), len(predicted)))
        for k, prior in enumerate(priors):
            table, _ = best_expert_table(fit_subjects, fit_correct, self.experts_, prior=prior)
            hits[k] = held_out_correct[rows, [column[table[s]] for s in predicted]]
        return hits

    # -- inference ---------------------------------------------------------------------------
    def subject_proba(self, documents: Sequence[RoutingDocument]) -> np.ndarray:
        """(n_documents, n_subjects): P(subject | question text), columns in ``subjects_`` order."""
        texts = document_texts(documents, self.text)
        if not texts:
            return np.zeros((0, len(self.subjects_)), dtype=np.float32)
        if self.backbone == "finetune":
            return softmax(self._finetuned.logits(texts)[:, :len(self.subjects_)])  # type: ignore[union-attr]
        return softmax(self.head_.logits(self.features_.transform(texts)))

    def expected_accuracy(self, documents: Sequence[RoutingDocument]) -> np.ndarray:
        """(n_documents, n_experts): each expert's training accuracy averaged over P(subject)."""
        return self.subject_proba(documents) @ self.subject_accuracy_

    def _predicted_subjects(self, documents: Sequence[RoutingDocument]) -> list[str]:
        """The most probable subject of each document (ignores the guard's mode)."""
        return [self.subjects_[k] for k in self.subject_proba(documents).argmax(axis=1)]

    def decide(self, documents: Sequence[RoutingDocument],
               subjects: Sequence[str | None] | None = None) -> list[RouteDecision]:
        """``subjects``: per document, a subject to route by instead of the predicted one (the
        document's own subject field, see the config's ``subject_source``), or None to predict.
        A given subject the table lacks is warned about once and the predicted subject used;
        a document without question text gets no expert (the CoE's fallback answers it)."""
        given = [normalize_subject(s) if s else None for s in (subjects or [None] * len(documents))]
        if len(given) != len(documents):
            raise ValueError(f"{len(given)} subjects for {len(documents)} documents")
        blank = blank_text(documents)
        predict = [i for i, d in enumerate(documents) if not blank[i] and given[i] not in self.table_]
        proba = self.subject_proba([documents[i] for i in predict])
        predicted = {i: row for i, row in zip(predict, proba)}
        decisions = []
        for i, subject in enumerate(given):
            if subject is not None and subject not in self.table_ and subject not in self._warned_subjects:
                self._warned_subjects.add(subject)
                logger.warning("benchcoe: subject %r (task %s) is not one of the router's %d subjects; routing such "
                               "documents by the subject predicted from their text", subject, documents[i].task,
                               len(self.subjects_))
            if subject in self.table_:
                score, reason = 1.0, "subject field"
            elif i in predicted:
                row = predicted[i]
                subject, score, reason = self.subjects_[int(np.argmax(row))], float(row.max()), "predicted subject"
            else:
                decisions.append(UNREADABLE)
                continue
            if self.mode_ == "best":
                decisions.append(RouteDecision(self.best_expert_, None, subject, "best single expert (guard)"))
            else:
                decisions.append(RouteDecision(self.table_[subject], score, subject, reason))
        return decisions

    # -- persistence ---------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> dict[str, Any]:
        tensors = {"subject_accuracy": self.subject_accuracy_}
        state: dict[str, Any] = {"weights": "subject.safetensors", "mode": self.mode_, "best_expert": self.best_expert_}
        if self.backbone == "finetune":
            import shutil

            target = folder / "classifier"
            if self._finetune_dir is not None and self._finetune_dir.resolve() != target.resolve():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(self._finetune_dir, target)
            state["classifier"] = "classifier"
        else:
            tensors.update(self.head_.tensors("subject_head"))
            state["features"] = self.features_.save(folder)
        save_tensors(tensors, folder / "subject.safetensors")
        return {"state": state}

    def _load_state(self, folder: Path, manifest: dict[str, Any]) -> None:
        state = manifest.get("state") or {}
        tensors = load_tensors(folder, state.get("weights", "subject.safetensors"))
        self.subject_accuracy_ = tensors["subject_accuracy"]
        self.mode_ = state.get("mode", "subject")
        self.best_expert_ = state.get("best_expert")
        if self.mode_ not in ("subject", "best") or (self.mode_ == "best" and self.best_expert_ not in self.experts_):
            raise RouterFormatError(f"{folder}: router state has mode {self.mode_!r} / best expert "
                                    f"{self.best_expert_!r}; re-train the router.")
        if self.backbone == "finetune":
            self._finetune_dir = folder / state.get("classifier", "classifier")
            self._finetuned = FineTunedModel(self._finetune_dir, max_length=self.max_length)
            self.features_, self.head_ = None, None
        else:
            self.features_ = TextFeatures.load(folder, state["features"])
            self.head_ = LinearHead.from_tensors(tensors, "subject_head")
        require_shape(folder, "subject_accuracy", self.subject_accuracy_.shape, (len(self.subjects_), len(self.experts_)))
