"""Evaluation reports as JSON and Markdown, plus their PNG figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from benchcoe_plugins.training import plots


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def interval(difference: Mapping[str, Any]) -> str:
    """``+1.23 (SE 0.45; 95 % [+0.34, +2.10])`` in accuracy points."""
    low, high = difference["ci95"]
    return (f"{difference['difference'] * 100:+.2f} (SE {difference['standard_error'] * 100:.2f}; "
            f"95 % [{low * 100:+.2f}, {high * 100:+.2f}])")


def documents_line(evaluation: Mapping[str, Any]) -> str:
    scenario = evaluation.get("scenario") or {}
    if scenario.get("in_sample"):
        return f"**{scenario['description']}**: {evaluation['documents']} documents."
    what = f" Scenario: {scenario['name']}, {scenario['description']}." if scenario else ""
    return (f"Held-out documents: {evaluation['documents']} (never used for training or choosing "
            f"hyper-parameters).{what}")


def evaluation_markdown(name: str, evaluation: Mapping[str, Any]) -> str:
    base = evaluation["baselines"]
    difference = evaluation.get("router_minus_best_single")  # absent from reports written before it existed
    lines = [f"# Router evaluation: {name}", "", documents_line(evaluation), ""]
    if evaluation.get("guard_note"):
        lines += [f"Guard: {evaluation['guard_note']}", ""]
    lines += ["| router / baseline | accuracy |", "|---|---|",
              f"| **router** | **{fmt(evaluation['accuracy'])}** |"]
    for key, value in base.items():
        label = key + (f" ({value['expert']})" if "expert" in value else "")
        lines.append(f"| {label} | {fmt(value['accuracy'])} |")
    if difference:
        lines += ["", f"Router - best single expert, paired over the same documents, in accuracy points: "
                      f"**{interval(difference)}** (bootstrap 95 % interval over documents)."]
    lines += ["", "| mu_o | V_R | V_B | E_p (max) |", "|---|---|---|---|",
              f"| {fmt(evaluation['mu_o'])} | {fmt(evaluation['V_R'])} | {fmt(evaluation['V_B'])} | "
              f"{fmt(evaluation['E_p'])} ({fmt(evaluation['E_p_max'])}) |", "",
              "Routing distribution: " + ", ".join(f"{e}: {n}" for e, n in evaluation["routing_distribution"].items()),
              ""]
    experts = list(evaluation["routing_distribution"])
    lines += ["| subject | n | " + " | ".join(experts) + " | router | oracle | router - best single (points) |",
              "|---|---|" + "---|" * (len(experts) + 3)]
    for subject, row in evaluation["per_subject"].items():
        lines.append(f"| {subject} | {row['documents']} | " + " | ".join(fmt(row["experts"][e]) for e in experts)
                     + f" | **{fmt(row['router'])}** | {fmt(row['oracle'])} | "
                     + (f"{interval(row['router_minus_best_single'])} |" if "router_minus_best_single" in row else "|"))
    return "\n".join(lines) + "\n"


def best_label(evaluation: Mapping[str, Any]) -> str:
    return evaluation["baselines"]["best_single"]["expert"]


def write_evaluation(output: Path, name: str, evaluation: Mapping[str, Any], plots_too: bool = True) -> dict[str, str]:
    """Writes evaluation.json, evaluation.md and (optionally) the two PNGs; returns their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    files = {"json": output / "evaluation.json", "markdown": output / "evaluation.md"}
    files["json"].write_text(json.dumps(evaluation, indent=2) + "\n")
    files["markdown"].write_text(evaluation_markdown(name, evaluation))
    if plots_too:
        subjects = list(evaluation["per_subject"])
        experts = list(evaluation["routing_distribution"])
        series = {e: [evaluation["per_subject"][s]["experts"][e] for s in subjects] for e in experts
                  if e != best_label(evaluation)}
        series[f"router ({name})"] = [evaluation["per_subject"][s]["router"] for s in subjects]
        series[f"best single ({best_label(evaluation)})"] = [evaluation["per_subject"][s]["best_single"] for s in subjects]
        series["oracle"] = [evaluation["per_subject"][s]["oracle"] for s in subjects]
        kind = "IN-SAMPLE" if (evaluation.get("scenario") or {}).get("in_sample") else "held-out"
        files["per_subject_png"] = plots.grouped_bars(output / "per_subject_accuracy.png", subjects, series,
                                                      f"{name}: accuracy per subject ({kind})")
        files["routing_png"] = plots.routing_distribution(output / "routing_distribution.png",
                                                          evaluation["routing_distribution"], f"{name}: routed experts")
        rows = {**{s: evaluation["per_subject"][s] for s in subjects},
                "all": {"documents": evaluation["documents"],
                        "router_minus_best_single": evaluation["router_minus_best_single"]}}
        kind = "in-sample" if (evaluation.get("scenario") or {}).get("in_sample") else "held-out"
        files["gain_png"] = plots.gains_with_intervals(
            output / "gain_over_best_single.png", list(rows),
            [r["router_minus_best_single"]["difference"] for r in rows.values()],
            [r["router_minus_best_single"]["ci95"] for r in rows.values()],
            f"{name}: router - best single ({best_label(evaluation)}), {kind}, 95 % intervals",
            counts=[r["documents"] for r in rows.values()])
    return {k: str(v) for k, v in files.items()}
