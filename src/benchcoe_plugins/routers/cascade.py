"""Cascade router: the first (cheap) expert answers every document; its answer decides whether the
second (strong) expert answers again.

A router that decides before any expert runs sees only the question. A cascade also reads what
the first expert wrote: whether an answer can be extracted at all, how many different answers it
named, how long it ran, how much it repeated itself. Two logistic heads over the question's
TF-IDF features, its subject, the values of ``fields`` (MMLU-Pro: ``src``) and those answer
features (with ``answer_letters``, also which option letter it chose: a model unsure of a
multiple-choice answer often falls back to the first option) give P(first right) and P(second
right); a document escalates when

    P(second right) - P(first right) > cost_weight x cost(second)

(``cost_weight = 0``: whenever the second is expected to do better). A budget on the second
expert's share or on the mean cost fixes ``cost_weight`` on calibration documents (out-of-fold
scores), as for the query router (:mod:`benchcoe_plugins.routers.cost`), with the cascade's costs:
the first expert's cost on every document, plus the second's where it escalates.

``C`` (when None) is chosen by ``folds``-fold cross-validation of the fit documents: the setting
whose out-of-fold escalation order recovers the most accuracy averaged over every escalation share.

The guard (``guard_z``, as for the query router, :mod:`benchcoe_plugins.routers.guard`): the
cascade's out-of-fold hits at its own threshold (the choice of ``C`` cross-fitted) must beat the
better of its two experts by more than ``guard_z`` standard errors, or every document goes to that
expert alone (no escalation; the second expert directly when it is the better one).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import expit  # the logistic function, without overflow warnings at large logits

from benchcoe_plugins.core.documents import RoutingDocument, subject_of
from benchcoe_plugins.core.errors import RecordsError, RouterFormatError
from benchcoe_plugins.routers.base import RouteDecision, Router, load_tensors, require_shape, save_tensors
from benchcoe_plugins.routers.encoders import TfidfEncoder
from benchcoe_plugins.routers.guard import cross_fitted_hits, cross_validation_splits, guard_verdict
from benchcoe_plugins.routers.query import field_value
from benchcoe_plugins.routers.subject import (
    LinearHead,
    check_training_inputs,
    document_subjects,
    document_texts,
    route_readable,
)
from benchcoe_plugins.routers.table import best_single_index

# lm-eval's mmlu_pro answer filter and MMLU-Pro's own extraction look for this phrase
DEFAULT_ANSWER_PATTERN = r"answer is \(?([A-J])\)?"
C_GRID = (0.1, 0.3, 1.0, 3.0)
OPTION_LETTERS = "ABCDEFGHIJ"
SHAPE_FEATURES = ("answered", "distinct_answers", "log_characters", "distinct_line_share")
ANSWER_FEATURES = SHAPE_FEATURES + tuple(f"answer_letter_{letter}" for letter in OPTION_LETTERS)


def answer_features(outputs: Sequence[str], pattern: str, names: Sequence[str] = ANSWER_FEATURES) -> np.ndarray:
    """(n, len(names)) per first-expert answer, of: an answer found, how many different ones, log
    length, the share of its non-empty lines that are distinct (a model stuck in a loop repeats
    lines), and a one-hot of the first found answer's option letter (A-J; the match lm-eval's regex
    filter keeps)."""
    compiled = re.compile(pattern)
    rows = []
    for text in outputs:
        text = text or ""
        found = compiled.findall(text)
        lines = [line for line in text.split("\n") if line.strip()]
        letters = [0.0] * len(OPTION_LETTERS)
        first = (found[0] if isinstance(found[0], str) else next((g for g in found[0] if g), "")) if found else ""
        letter = first.strip().upper()
        if len(letter) == 1 and letter in OPTION_LETTERS:
            letters[OPTION_LETTERS.index(letter)] = 1.0
        rows.append([float(bool(found)), float(min(len(set(found)), 3)), math.log1p(len(text)),
                     len(set(lines)) / len(lines) if lines else 1.0, *letters])
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(ANSWER_FEATURES))
    return table[:, [ANSWER_FEATURES.index(name) for name in names]]


def escalated_hits(scores: np.ndarray, correct: np.ndarray, first: int, second: int) -> np.ndarray:
    """Per document, whether the answer that counts is right: ``second``'s where its score beats ``first``'s
    (escalation at threshold 0), else ``first``'s."""
    return np.where(scores[:, second] > scores[:, first], correct[:, second], correct[:, first])


def recovered_area(gain_order: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """Mean accuracy over every escalation share (0 .. all documents) when documents escalate in order of
    ``gain_order`` (highest first): the quantity the choice of ``C`` maximises."""
    order = np.argsort(-gain_order, kind="stable")
    accuracy = (first.sum() + np.concatenate([[0.0], np.cumsum(second[order] - first[order])])) / len(first)
    return float(((accuracy[:-1] + accuracy[1:]) / 2).mean())


class CascadeRouter(Router):
    kind = "cascade"

    def __init__(self, C: float | None = None, max_features: int = 30000, text: str = "question+options",
                 answer_pattern: str = DEFAULT_ANSWER_PATTERN, fields: list[str] | None = None, folds: int = 5,
                 answer_letters: bool = False, guard_z: float | None = 1.0, seed: int = 0,
                 progress: bool = False) -> None:
        self.C = C
        self.max_features = max_features
        self.text = text
        self.answer_pattern = answer_pattern
        self.fields = fields
        self.folds = folds
        self.answer_letters = answer_letters
        self.guard_z = guard_z
        self.seed = seed
        self.progress = progress

    # -- features ----------------------------------------------------------------------------
    def _category_columns(self, documents: Sequence[RoutingDocument]) -> np.ndarray:
        """One-hot of the document's subject and of each of ``fields``' values seen in training."""
        columns = np.zeros((len(documents), len(self.categories_)), dtype=np.float32)
        index = {name: i for i, name in enumerate(self.categories_)}
        for row, document in enumerate(documents):
            subject = subject_of(document.task, document.doc)
            names = [f"subject={subject}"] if subject else []
            names += [f"{f}={value}" for f in self.fields or [] if (value := field_value(document, f)) is not None]
            for name in names:
                if name in index:
                    columns[row, index[name]] = 1.0
        return columns

    def _features(self, documents: Sequence[RoutingDocument], outputs: Sequence[str]) -> Any:
        from scipy import sparse

        answers = (answer_features(outputs, self.answer_pattern, self.answer_features_) - self.answer_mean_) \
            / self.answer_scale_
        return sparse.hstack([self.tfidf_.transform(document_texts(documents, self.text)),
                              sparse.csr_matrix(self._category_columns(documents)),
                              sparse.csr_matrix(answers.astype(np.float32))], format="csr")

    def _prepare(self, documents: Sequence[RoutingDocument], outputs: Sequence[str],
                 subjects: Sequence[str]) -> Any:
        """Fits the feature maps (TF-IDF vocabulary, categories, answer-feature scaling) on ``documents``."""
        self.tfidf_ = TfidfEncoder(self.max_features).fit(document_texts(documents, self.text))
        names = {f"subject={s}" for s in subjects}
        for f in self.fields or []:
            names |= {f"{f}={v}" for d in documents if (v := field_value(d, f)) is not None}
        self.categories_ = sorted(names)
        self.answer_features_ = list(ANSWER_FEATURES if self.answer_letters else SHAPE_FEATURES)
        raw = answer_features(outputs, self.answer_pattern, self.answer_features_)
        self.answer_mean_ = raw.mean(axis=0)
        self.answer_scale_ = np.where(raw.std(axis=0) > 0, raw.std(axis=0), 1.0)
        return self._features(documents, outputs)

    # -- fitting -----------------------------------------------------------------------------
    def _check_fit_inputs(self, documents: Sequence[RoutingDocument], outputs: Sequence[str], expert: str) -> None:
        if len(outputs) != len(documents):
            raise RecordsError(f"{len(outputs)} answers of {expert!r} for {len(documents)} documents.")
        if not any(outputs):
            raise RecordsError(f"the records of {expert!r} hold no answer text (generated_text / response / "
                               f"resps), which a cascade reads; give records or sample logs with the outputs "
                               f"(of a generate_until task: a log-likelihood task's responses are scores, not text).")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise RecordsError(f"folds={self.folds!r}: the cascade chooses C by cross-validation, which needs at least "
                               f"2 folds.")
        if len(documents) < max(20, 2 * self.folds):
            raise RecordsError(f"{len(documents)} documents are too few for {self.folds}-fold tuning of a cascade.")

    def _out_of_fold(self, documents: list[RoutingDocument], outputs: list[str], subject_names: list[str],
                     correct: np.ndarray, grid: Sequence[float]) -> dict[float, np.ndarray]:
        """Per ``C``: (n, columns of ``correct``) P(right) of documents scored by a model fitted on the other
        folds, reading ``outputs`` (one first expert's answers)."""
        out_of_fold = {c: np.zeros(correct.shape) for c in grid}
        for inside, fold in cross_validation_splits(len(documents), self.folds, self.seed):
            model = CascadeRouter(**self.get_params())
            features = model._prepare([documents[i] for i in inside], [outputs[i] for i in inside],
                                      [subject_names[i] for i in inside])
            fold_features = model._features([documents[i] for i in fold], [outputs[i] for i in fold])
            for c in grid:
                head = LinearHead.fit_binary_columns(features, correct[inside], c)
                out_of_fold[c][fold] = expit(head.logits(fold_features))
        return out_of_fold

    def fit(self, documents: Sequence[RoutingDocument], correct: np.ndarray, experts: Sequence[str],
            outputs: Sequence[str] | Mapping[str, Sequence[str]],
            subjects: Sequence[str | None] | None = None) -> "CascadeRouter":
        """``experts`` = [first, second]; ``outputs``: the first expert's answer text per document. With
        ``outputs`` a mapping (each expert's answer texts), ``experts`` is a pool of two or more and the
        ordered pair is chosen by cross-validation (see :meth:`_fit_pool`)."""
        correct = check_training_inputs(documents, correct, experts)
        if isinstance(outputs, Mapping):
            return self._fit_pool(list(documents), correct, list(experts), outputs, subjects)
        if len(experts) != 2:
            raise RecordsError(f"a cascade has two experts, the first (answers every document) and the second "
                               f"(answers again where the first seems wrong); got {list(experts)}.")
        self._check_fit_inputs(documents, outputs, experts[0])
        documents, outputs = list(documents), list(outputs)
        subject_names = document_subjects(documents, subjects)
        grid = C_GRID if self.C is None else (self.C,)
        out_of_fold = self._out_of_fold(documents, outputs, subject_names, correct, grid)
        return self._fit_pair(documents, correct, list(experts), outputs, subject_names, out_of_fold,
                              guarded=self.guard_z is not None)

    def _fit_pair(self, documents: list[RoutingDocument], correct: np.ndarray, experts: list[str],
                  outputs: list[str], subject_names: list[str], out_of_fold: dict[float, np.ndarray],
                  guarded: bool) -> "CascadeRouter":
        """Fits the cascade [first, second] from its out-of-fold scores per ``C`` (columns: first, second):
        chooses ``C``, fits the heads on every document, and (``guarded``) applies the guard."""
        self.experts_ = list(experts)
        self.pool_ = list(experts)
        grid = tuple(out_of_fold)
        areas = {c: recovered_area(p[:, 1] - p[:, 0], correct[:, 0], correct[:, 1]) for c, p in out_of_fold.items()}
        self.C_ = max(grid, key=lambda c: (areas[c], -c))  # first best: the stronger regularisation
        self.calibration_scores_ = out_of_fold[self.C_].astype(np.float32)
        self.head_ = LinearHead.fit_binary_columns(self._prepare(documents, outputs, subject_names), correct, self.C_)
        self.subjects_, self.table_ = [], {}
        self.best_expert_ = self.experts_[best_single_index(correct)]
        self.metadata_ = {"tuning": {"method": f"{self.folds}-fold cross-validation of the fit documents",
                                     "C": self.C_, "recovered_area": {str(c): round(a, 6) for c, a in areas.items()},
                                     "documents": len(documents)},
                          "first_expert": self.experts_[0], "second_expert": self.experts_[1],
                          "best_expert": self.best_expert_}
        self.mode_ = "cascade"
        if guarded:
            # each C's out-of-fold hits at threshold 0; the choice of C is scored too (cross-fitted)
            candidate_hits = np.array([escalated_hits(out_of_fold[c], correct, 0, 1) for c in grid])
            honest = cross_fitted_hits(candidate_hits, self.folds, self.seed + 1)
            verdict = guard_verdict(honest, correct[:, self.experts_.index(self.best_expert_)], self.guard_z)
            self.mode_ = "cascade" if verdict["routes"] else "best"
            self.metadata_["guard"] = {"method": f"cross-fitted choice of C, {self.folds}-fold cross-validation",
                                       **verdict, "cross_fitted_accuracy": round(float(honest.mean()), 6)}
        return self

    def _fit_pool(self, documents: list[RoutingDocument], correct: np.ndarray, experts: list[str],
                  outputs: Mapping[str, Sequence[str]], subjects: Sequence[str | None] | None) -> "CascadeRouter":
        """The cascade of a pool: every ordered pair (first, second) of ``experts`` at every ``C`` is a
        candidate, scored by its out-of-fold hits; the best one is fitted as a two-expert cascade. The
        guard scores the choice among all candidates cross-fitted, against the pool's best single
        expert; when it fails, every document goes to that expert (stored as the best pair it is in)."""
        lacking = [e for e in experts if e not in outputs]
        if lacking:
            raise RecordsError(f"choosing a cascade's pair reads every expert's answer texts; none given for {lacking}.")
        for expert in experts:
            self._check_fit_inputs(documents, list(outputs[expert]), expert)
        subject_names = document_subjects(documents, subjects)
        grid = C_GRID if self.C is None else (self.C,)
        from tqdm.auto import tqdm

        labels, hits = [], []
        out_of_fold: dict[int, dict[float, np.ndarray]] = {}  # per first expert; kept for the chosen pair's fit
        firsts = tqdm(range(len(experts)), desc="cascade pairs, by first expert", unit="expert",
                      disable=not self.progress)
        for first in firsts:  # one model per first expert scores every expert's column
            out_of_fold[first] = self._out_of_fold(documents, list(outputs[experts[first]]), subject_names, correct,
                                                   grid)
            for second in range(len(experts)):
                if second != first:
                    for c in grid:
                        labels.append((first, second, c))
                        hits.append(escalated_hits(out_of_fold[first][c], correct, first, second))
        candidate_hits = np.array(hits)
        totals = candidate_hits.sum(axis=1)
        pair_accuracy = {}
        for (first, second, _), total in zip(labels, totals):
            name = f"{experts[first]} -> {experts[second]}"
            pair_accuracy[name] = max(pair_accuracy.get(name, 0.0), round(float(total) / len(documents), 6))
        best = best_single_index(correct)
        verdict = None
        if self.guard_z is not None:
            honest = cross_fitted_hits(candidate_hits, self.folds, self.seed + 1)
            verdict = {"method": f"cross-fitted choice of pair and C among {len(labels)} candidates, "
                                 f"{self.folds}-fold cross-validation",
                       **guard_verdict(honest, correct[:, best], self.guard_z),
                       "cross_fitted_accuracy": round(float(honest.mean()), 6)}
        routes = verdict is None or verdict["routes"]
        eligible = [i for i, label in enumerate(labels) if routes or best in label[:2]]
        first, second, c = labels[max(eligible, key=lambda i: (totals[i], -i))]
        # the chosen candidate's own C (the setting whose out-of-fold hits the guard weighed), its scores reused
        self._fit_pair(documents, correct[:, [first, second]], [experts[first], experts[second]],
                       list(outputs[experts[first]]), subject_names, {c: out_of_fold[first][c][:, [first, second]]},
                       guarded=False)
        self.pool_ = list(experts)
        self.best_expert_ = experts[best] if not routes else self.best_expert_
        self.mode_ = "cascade" if routes else "best"
        self.metadata_["tuning"]["method"] = (f"chosen with the pair: best out-of-fold accuracy, {self.folds}-fold "
                                              f"cross-validation of the fit documents")
        self.metadata_.update({"best_expert": self.best_expert_,
                               "pair_choice": {"method": f"best out-of-fold accuracy of every ordered pair at every C in {list(grid)}, "
                                                         f"{self.folds}-fold cross-validation of the fit documents",
                                               "chosen": f"{self.first} -> {self.second}",
                                               "pair_accuracy": dict(sorted(pair_accuracy.items(),
                                                                            key=lambda kv: -kv[1]))}})
        if verdict is not None:
            self.metadata_["guard"] = verdict
        return self

    # -- inference ---------------------------------------------------------------------------
    @property
    def first(self) -> str:
        return self.experts_[0]

    @property
    def second(self) -> str:
        return self.experts_[1]

    def expected_accuracy_given(self, documents: Sequence[RoutingDocument], outputs: Sequence[str]) -> np.ndarray:
        """(n, 2): P(first right), P(second right), having read the first expert's answers."""
        if len(outputs) != len(documents):
            raise ValueError(f"{len(outputs)} first-expert answers for {len(documents)} documents")
        if not len(documents):
            return np.zeros((0, 2), dtype=np.float32)
        return expit(self.head_.logits(self._features(documents, outputs))).astype(np.float32)

    def escalate(self, documents: Sequence[RoutingDocument], outputs: Sequence[str],
                 gain_threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(escalate?, expected gain) per document: escalate where the gain exceeds ``gain_threshold``
        (``cost_weight x cost(second)``; 0: wherever the second is expected to do better). After the
        guard chose the better expert alone: all documents to it (``decide`` sends them there)."""
        scores = self.expected_accuracy_given(documents, outputs)
        gain = (scores[:, 1] - scores[:, 0]).astype(np.float64)
        if self.mode_ == "best":
            return np.full(len(documents), self.best_expert_ == self.second), gain
        return gain > gain_threshold, gain

    def calibration_scores(self) -> np.ndarray:
        return self.calibration_scores_

    def decide(self, documents: Sequence[RoutingDocument]) -> list[RouteDecision]:
        """Every readable document goes to the first expert; :meth:`escalate` decides on its answer. After
        the guard chose one expert alone, every readable document goes to it."""
        if self.mode_ == "best":
            decision = RouteDecision(self.best_expert_, None, None, "guard: best single expert")
        else:
            decision = RouteDecision(self.first, None, None, "cascade: first expert")
        return route_readable(documents, lambda readable: [decision for _ in readable])

    # -- persistence ---------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> dict[str, Any]:
        tensors = {**self.head_.tensors("head"), "calibration_scores": self.calibration_scores_,
                   "answer_mean": self.answer_mean_.astype(np.float64),
                   "answer_scale": self.answer_scale_.astype(np.float64)}
        save_tensors(tensors, folder / "cascade.safetensors")
        return {"cascade": {"weights": "cascade.safetensors", "C": self.C_, "categories": self.categories_,
                            "tfidf": self.tfidf_.save(folder), "answer_features": list(self.answer_features_),
                            "mode": self.mode_, "pool": list(self.pool_)}}

    def _load_state(self, folder: Path, manifest: dict[str, Any]) -> None:
        state = manifest.get("cascade")
        if not isinstance(state, dict) or not isinstance(state.get("categories"), list):
            raise RouterFormatError(f"{folder}: router.json lacks the cascade's state; re-train the router.")
        if len(self.experts_) != 2:
            raise RouterFormatError(f"{folder}: a cascade has two experts, this one lists {self.experts_}.")
        try:
            re.compile(self.answer_pattern)
            document_texts([], self.text)
        except (re.error, TypeError, ValueError) as error:
            raise RouterFormatError(f"{folder}: params answer_pattern / text are unusable ({error}); fix "
                                    f"router.json or re-train the router.") from None
        tensors = load_tensors(folder, state.get("weights", "cascade.safetensors"))
        self.C_ = state.get("C")
        names = state.get("answer_features", list(SHAPE_FEATURES))
        # routers saved before the guard have none: they escalate as they always did
        self.mode_ = state.get("mode", "cascade")
        self.best_expert_ = self.metadata_.get("best_expert", self.experts_[-1])
        if not isinstance(names, list) or not set(names) <= set(ANSWER_FEATURES) or len(set(names)) != len(names):
            raise RouterFormatError(f"{folder}: cascade.answer_features must list distinct names from "
                                    f"{list(ANSWER_FEATURES)}; re-train the router.")
        if self.mode_ not in ("cascade", "best") or self.best_expert_ not in self.experts_:
            raise RouterFormatError(f"{folder}: cascade mode {self.mode_!r} / best expert {self.best_expert_!r} "
                                    f"unusable (mode is cascade or best, the expert one of {self.experts_}); "
                                    f"re-train the router.")
        pool = state.get("pool", list(self.experts_))  # routers saved before pools: their two experts
        if not isinstance(pool, list) or not all(isinstance(e, str) for e in pool) or not set(self.experts_) <= set(pool):
            raise RouterFormatError(f"{folder}: cascade.pool must list the experts its pair was chosen from, "
                                    f"{self.experts_} among them; re-train the router.")
        self.pool_ = pool
        self.answer_features_ = names
        self.categories_ = [str(c) for c in state["categories"]]
        self.tfidf_ = TfidfEncoder.load(folder, state.get("tfidf", {}))
        try:
            self.head_ = LinearHead.from_tensors(tensors, "head")
            self.calibration_scores_ = tensors["calibration_scores"]
            self.answer_mean_, self.answer_scale_ = tensors["answer_mean"], tensors["answer_scale"]
        except KeyError as error:
            raise RouterFormatError(f"{folder}: cascade weights lack {error}; re-train the router.") from None
        width = self.tfidf_.dim + len(self.categories_) + len(names)
        require_shape(folder, "head.coef", self.head_.coef.shape, (2, width))
        require_shape(folder, "answer_mean", self.answer_mean_.shape, (len(names),))
        require_shape(folder, "answer_scale", self.answer_scale_.shape, (len(names),))
        if self.calibration_scores_.ndim != 2 or self.calibration_scores_.shape[1] != 2:
            raise RouterFormatError(f"{folder}: calibration_scores has shape {self.calibration_scores_.shape}, "
                                    f"not (documents, 2); re-train the router.")
