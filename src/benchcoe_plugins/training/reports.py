"""Evaluation reports as JSON and Markdown, plus their PNG figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from benchcoe_plugins.training import plots


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def evaluation_markdown(name: str, evaluation: Mapping[str, Any]) -> str:
    base = evaluation["baselines"]
    lines = [f"# Router evaluation: {name}", "",
             f"Held-out documents: {evaluation['documents']} (never used for training or choosing hyper-parameters).", "",
             "| router / baseline | accuracy |", "|---|---|",
             f"| **router** | **{fmt(evaluation['accuracy'])}** |"]
    for key, value in base.items():
        label = key + (f" ({value['expert']})" if "expert" in value else "")
        lines.append(f"| {label} | {fmt(value['accuracy'])} |")
    lines += ["", "| mu_o | V_R | V_B | E_p (max) |", "|---|---|---|---|",
              f"| {fmt(evaluation['mu_o'])} | {fmt(evaluation['V_R'])} | {fmt(evaluation['V_B'])} | "
              f"{fmt(evaluation['E_p'])} ({fmt(evaluation['E_p_max'])}) |", "",
              "Routing distribution: " + ", ".join(f"{e}: {n}" for e, n in evaluation["routing_distribution"].items()),
              ""]
    experts = list(evaluation["routing_distribution"])
    lines += ["| subject | n | " + " | ".join(experts) + " | router | oracle |",
              "|---|---|" + "---|" * (len(experts) + 2)]
    for subject, row in evaluation["per_subject"].items():
        lines.append(f"| {subject} | {row['documents']} | " + " | ".join(fmt(row["experts"][e]) for e in experts)
                     + f" | **{fmt(row['router'])}** | {fmt(row['oracle'])} |")
    return "\n".join(lines) + "\n"


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
        series = {e: [evaluation["per_subject"][s]["experts"][e] for s in subjects] for e in experts}
        series[f"router ({name})"] = [evaluation["per_subject"][s]["router"] for s in subjects]
        series["oracle"] = [evaluation["per_subject"][s]["oracle"] for s in subjects]
        files["per_subject_png"] = plots.grouped_bars(output / "per_subject_accuracy.png", subjects, series,
                                                      f"{name}: accuracy per subject (held-out)")
        files["routing_png"] = plots.routing_distribution(output / "routing_distribution.png",
                                                          evaluation["routing_distribution"], f"{name}: routed experts")
    return {k: str(v) for k, v in files.items()}
