"""``benchcoe evaluate``: a router vs. the baselines on documents it never trained on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.data_args import add_data_arguments, check_data_arguments, given_flags, load_data
from benchcoe_plugins.training.dataset import BenchmarkData
from benchcoe_plugins.training.scenarios import add_scenario_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--router", type=Path, required=True, help="router checkpoint folder")
    add_data_arguments(parser)
    parser.add_argument("--split", type=Path, help="split file (default: the checkpoint's split.json)")
    parser.add_argument("--subset", default="test", choices=("test", "validation", "in-sample"),
                        help="which held-out part of the split to evaluate on; in-sample: the documents the router "
                             "was fitted on (the naive scenario, labelled in-sample everywhere)")
    add_scenario_arguments(parser, training=False)
    parser.add_argument("--output", type=Path, help="report folder (default: benchcoe_eval/<router name>)")
    parser.add_argument("--no-plots", action="store_true")
    cost = parser.add_argument_group("accuracy-cost curve (routers that score every expert, e.g. kind query)")
    cost.add_argument("--costs", type=Path, help="parameter-count JSON giving each expert's cost (default: the "
                      "costs stored in the router, else the shipped tasks/mmlu_pro/parameter_counts.json; "
                      "active parameters for MoE)")
    cost.add_argument("--strong", help="the strong expert of APGR / CPT (default: the most expensive)")
    cost.add_argument("--weak", help="the weak expert of APGR / CPT (default: the cheapest expert on the "
                      "single-expert Pareto front)")
    cost.add_argument("--no-cost-curve", action="store_true")


def cascade_choices(router: Any, data: BenchmarkData, outputs: list[str] | None,
                    gain_threshold: float = 0.0) -> list[str]:
    """Which expert's answer counts per document: the second where the cascade escalates."""
    if outputs is None:
        raise RecordsError("a cascade router is evaluated on the first expert's answer texts; give --records or "
                           "--samples that hold them.")
    escalated, _ = router.escalate(data.documents, outputs, gain_threshold)
    return [router.second if up else router.first for up in escalated.tolist()]


def compared_experts(router: Any) -> list[str]:
    """The experts whose best single a router is compared with: its own, or the pool a cascade's pair was
    chosen from (it could have chosen any of them)."""
    return list(getattr(router, "pool_", None) or router.experts_)


def evaluate_router(router: Any, train: BenchmarkData, test: BenchmarkData, batch_size: int = 2048,
                    scenario: dict[str, Any] | None = None, outputs: list[str] | None = None) -> dict[str, Any]:
    """Routes ``test`` (batched, with a progress bar) and compares with the baselines from ``train``
    (the documents the router's final fit saw: the best single expert is chosen there too).
    ``scenario`` (see :mod:`.scenarios`) says what ``test`` is; the reports print it. ``outputs``: a
    cascade's first-expert answer texts of ``test``."""
    from tqdm.auto import tqdm

    from benchcoe_plugins.routers.guard import guard_note
    from benchcoe_plugins.training.metrics import baselines, evaluate_routing

    missing = [e for e in router.experts_ if e not in test.experts]
    if missing:
        raise RecordsError(f"the router routes to experts {missing} that have no results in the evaluation data "
                           f"({test.experts}).")
    compared = compared_experts(router)
    missing = [e for e in compared if e not in test.experts or e not in train.experts]
    if missing:
        raise RecordsError(f"the router was chosen among {compared}; its best single baseline needs the results of "
                           f"{missing} too: give records or sample logs that hold them.")
    test = test.select_experts(compared)
    train = train.select_experts(compared)
    choices: list[str | None] = []
    if router.kind == "cascade":
        choices.extend(cascade_choices(router, test, outputs))
    else:
        for start in tqdm(range(0, len(test), batch_size), desc="routing", unit="batch", disable=len(test) <= batch_size):
            choices.extend(router.predict(test.documents[start:start + batch_size]))
    if not len(train):
        raise RecordsError("no training documents in the split: baselines (best single, true-subject table) "
                           "need the training part.")
    base = baselines(train.correct, train.subjects, test.correct, test.subjects, test.experts)
    fallback = base["best_single"]["expert"]
    evaluation = evaluate_routing(test.correct, test.subjects, test.experts, choices, base, fallback=fallback)
    return {"scenario": scenario or {"name": "held-out", "in_sample": False, "description": "held-out documents"},
            "guard_note": guard_note(router), **evaluation}


def validation_scenario(split: dict[str, Any]) -> dict[str, Any]:
    """The validation part chose the router's settings (and with a refit it was fitted on too), so
    figures on it are in-sample, never held-out."""
    refitted = "validation" in split.get("fitted_on", ["train"])
    how = "chose its settings on them and was then refitted on them" if refitted else "chose its settings on them"
    return {"name": "validation", "in_sample": True,
            "description": f"IN-SAMPLE: the validation documents; the router {how}, so this figure is optimistic"}


def check_subset_arguments(args: argparse.Namespace) -> None:
    """--subset options that another option would override, refused before anything is read."""
    if args.subset == "in-sample":
        ignored = given_flags(args, "--test-where", "--test-source")
        if ignored:
            raise RecordsError(f"--subset in-sample scores every document the router was fitted on, so {ignored} "
                               f"would have no effect; drop {ignored}, or use --subset test.")
    elif args.subset == "validation" and args.test_source:
        raise RecordsError("--test-source tests on another record set, so --subset validation would have no effect; "
                           "drop --subset validation, or --test-source.")
    curve_only = given_flags(args, "--costs", "--strong", "--weak")
    if args.no_cost_curve and curve_only:
        raise RecordsError(f"{curve_only} shape the accuracy-cost curve, which --no-cost-curve skips; drop one of them.")
    if args.strong is not None and args.strong == args.weak:
        raise RecordsError(f"--strong and --weak both name {args.strong!r}; APGR / CPT measure the gap between two "
                           f"experts, so name two.")


def summary_line(evaluation: dict[str, Any]) -> str:
    """The console's one-line verdict: router vs. best single with its paired 95 % interval."""
    difference = evaluation["router_minus_best_single"]
    base = evaluation["baselines"]
    label = "IN-SAMPLE " if evaluation["scenario"]["in_sample"] else ""
    return (f"{label}accuracy {evaluation['accuracy']:.4f} on {evaluation['documents']} documents "
            f"({evaluation['scenario']['name']}); best single {base['best_single']['accuracy']:.4f} "
            f"({base['best_single']['expert']}); router - best single {difference['difference'] * 100:+.2f} points "
            f"(SE {difference['standard_error'] * 100:.2f}, bootstrap 95 % [{difference['ci95'][0] * 100:+.2f}, "
            f"{difference['ci95'][1] * 100:+.2f}]); oracle {base['oracle']['accuracy']:.4f}")


def run(args: argparse.Namespace) -> int:
    from benchcoe_plugins.routers.base import Router
    from benchcoe_plugins.training.dataset import note_outside_split, parts_subset, read_split, split_from_keys
    from benchcoe_plugins.training.reports import write_evaluation
    from benchcoe_plugins.training.scenarios import (load_test_source, recorded_scenario, require_disjoint,
                                                     require_experts, scenario_summary, where_mask)

    check_data_arguments(args)
    check_subset_arguments(args)
    router = Router.load(args.router)
    data = load_data(args)
    split_path = args.split or args.router / "split.json"
    if not split_path.is_file():
        raise RecordsError(f"no split: {split_path} is missing. Pass --split FILE naming the held-out documents "
                           f"(the router must not have trained on them).")
    split = read_split(split_path)
    if not args.test_source:
        note_outside_split(data, split, "benchcoe evaluate")
    fitted_on = [p for p in split.get("fitted_on", ["train"]) if p != args.subset]
    fit_keys = {p: split.get(p, []) for p in fitted_on}
    indices = split_from_keys(data, fit_keys)
    fit_data = parts_subset(data, indices, fitted_on)
    if args.subset == "in-sample":
        held_out, scenario = fit_data, scenario_summary(args, in_sample=True)
    else:
        if args.test_source:
            held_out = load_test_source(args)
            require_experts(held_out, router.experts_)
        else:
            held_out = data.subset(split_from_keys(data, {args.subset: split.get(args.subset, [])})[args.subset])
        if args.test_where:
            held_out = held_out.subset(np.flatnonzero(where_mask(held_out, args.test_where, "--test-where")))
        scenario = recorded_scenario(split, split_path, None if args.split else getattr(router, "metadata_", None))
        if args.test_source:
            require_disjoint(fit_data, held_out)
            scenario = scenario_summary(args)
        elif args.subset == "validation":
            scenario = validation_scenario(split)
    if not len(held_out):
        raise RecordsError(f"none of the {args.subset} documents of {split_path} are in the given data.")
    if not scenario.get("in_sample"):  # a figure called held-out must be on documents the router never fitted
        from benchcoe_plugins.training.dataset import require_held_out

        require_held_out([(args.router.name, args.router)], set(held_out.keys()))
    cascade = router.kind == "cascade"
    if cascade and args.test_source:
        raise RecordsError("a cascade is evaluated on the source it reads the first expert's answers from; drop "
                           "--test-source.")
    wants_curve = not args.no_cost_curve and (cascade or callable(getattr(router, "expected_accuracy", None)))
    costs = expert_costs(args, router) if wants_curve else None
    outputs = None
    if cascade:
        from benchcoe_plugins.training.outputs import expert_outputs

        outputs = expert_outputs(args, router.first, held_out.select_experts(router.experts_))
    evaluation = evaluate_router(router, fit_data, held_out, scenario=scenario, outputs=outputs)
    name = json.loads((args.router / "router.json").read_text()).get("name", args.router.name)
    output = args.output or Path("benchcoe_eval") / name
    files = write_evaluation(output, name, evaluation, plots_too=not args.no_plots)
    if costs is not None:
        write_cost_curve(router, held_out, costs, args, output, name, outputs, in_sample=bool(scenario.get("in_sample")))
    print(f"benchcoe evaluate: {name}: {summary_line(evaluation)}")
    if evaluation["guard_note"]:
        print(evaluation["guard_note"])
    print(f"report: {files['markdown']}")
    return 0


def expert_costs(args: argparse.Namespace, router: Any) -> Any:
    """Cost vector of the router's experts, checked before any routing."""
    experts = list(router.experts_)
    from benchcoe_plugins.routers.cost import cost_vector, parameter_counts

    stored = getattr(router, "metadata_", {}).get("costs")
    given = stored if stored and args.costs is None else parameter_counts(args.costs)
    if args.costs is None and not stored and any(e not in given for e in experts):
        # nobody asked for costs and the shipped table does not know these experts (e.g. the VLMs)
        print(f"benchcoe evaluate: no accuracy-cost curve: no parameter count for {[e for e in experts if e not in given]} "
              f"(give --costs FILE to draw it)")
        return None
    costs = cost_vector(experts, given, f"--costs {args.costs or 'parameter_counts.json'}")
    for flag in ("strong", "weak"):
        if getattr(args, flag) and getattr(args, flag) not in experts:
            raise RecordsError(f"--{flag} {getattr(args, flag)!r} is not one of the router's experts {experts}.")
    return costs


def write_cost_curve(router: Any, held_out: BenchmarkData, costs: Any, args: argparse.Namespace, output: Path,
                     name: str, outputs: list[str] | None = None, in_sample: bool = False) -> dict[str, Any]:
    """The accuracy-cost curve on the held-out documents (``in_sample``: on documents the router was
    fitted on, labelled so in the JSON, the plot and the console): JSON, PNG and the summary line. A
    cascade pays its first expert on every document, so its second expert costs both there."""
    import numpy as np

    from benchcoe_plugins.training.cost_curve import cascade_curve, cost_curve, plot_cost_curve

    held_out = held_out.select_experts(router.experts_)
    index = {e: i for i, e in enumerate(router.experts_)}
    if router.kind == "cascade":
        curve = cascade_curve(router.expected_accuracy_given(held_out.documents, outputs), held_out.correct,
                              router.experts_, costs, router.calibration_scores_)
    else:
        scores = router.expected_accuracy(held_out.documents)
        fallback = getattr(router, "best_expert_", router.experts_[0])
        choices = np.array([index[c if c is not None else fallback] for c in router.predict(held_out.documents)])
        calibration = getattr(router, "calibration_scores_", None)
        curve = cost_curve(scores, held_out.correct, router.experts_, costs, choices, args.strong, args.weak,
                           calibration_scores=calibration)
    curve["cost_label"] = "billions of parameters" if args.costs is None else f"from {args.costs}"
    curve["documents_kind"] = "IN-SAMPLE" if in_sample else "held-out"
    output.mkdir(parents=True, exist_ok=True)
    (output / "cost_curve.json").write_text(json.dumps(curve, indent=2) + "\n")
    if not args.no_plots:
        plot_cost_curve(output / "cost_curve.png", curve,
                        f"{name}: accuracy vs cost on {len(held_out)} {curve['documents_kind']} documents")

    def pct(value: float | None) -> str:
        return "not reached" if value is None else f"{100 * value:.1f} %"

    apgr = "undefined (the weak expert is not less accurate)" if curve["APGR"] is None else f"{curve['APGR']:.4f}"
    label = "IN-SAMPLE " if in_sample else ""
    print(f"{label}cost curve ({curve['weak']} -> {curve['strong']}): APGR {apgr}, "
          f"CPT(50 %) {pct(curve['CPT_50'])}, CPT(80 %) {pct(curve['CPT_80'])}; strong-expert accuracy "
          + ("not reached" if curve["cost_to_match_strong"] is None
             else f"reached at {pct(curve['cost_to_match_strong'])} of its cost")
          + f"; {output / 'cost_curve.json'}")
    return curve
