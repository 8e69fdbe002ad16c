"""PNG figures (matplotlib, Agg backend): per-subject accuracy, routing distribution and the
router's paired gain over the best single expert with 95 % intervals.

Router, best single expert and oracle have one fixed colour each in every figure
(:data:`ROLE_COLORS`); experts take the remaining colours of a palette without them."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


ROLE_COLORS = {"router": "#d62728", "best single": "#1f77b4", "oracle": "#7f7f7f"}
# several routers in one plot: the k-th takes the k-th shade and hatch (the first is ROLE_COLORS' red)
ROUTER_SHADES = ("#d62728", "#ff9896", "#8c1a1a", "#e7969c")
ROUTER_HATCHES = ("..", "xx", "--", "oo")
EXPERT_COLORS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#aec7e8",
                 "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94")


def role_of(label: str) -> str | None:
    """Which fixed-colour role a series label names (router/CoE, best single, oracle), if any."""
    lowered = label.lower()
    if lowered.startswith(("router", "coe")) or " router" in lowered or "-level" in lowered:
        return "router"
    if "best single" in lowered:
        return "best single"
    if "oracle" in lowered:
        return "oracle"
    return None


def router_rank(labels: Sequence[str], label: str) -> int:
    """The position of ``label`` among the router series of ``labels`` (0 for the first router)."""
    return [other for other in labels if role_of(other) == "router"].index(label)


def series_colors(labels: Sequence[str]) -> list[str]:
    out, experts = [], 0
    for label in labels:
        role = role_of(label)
        if role == "router":
            out.append(ROUTER_SHADES[router_rank(labels, label) % len(ROUTER_SHADES)])
        elif role:
            out.append(ROLE_COLORS[role])
        else:
            out.append(EXPERT_COLORS[experts % len(EXPERT_COLORS)])
            experts += 1
    return out


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.05)
    _pyplot().close(fig)
    return path


def grouped_bars(path: Path, subjects: Sequence[str], series: Mapping[str, Sequence[float]], title: str,
                 ylabel: str = "accuracy", ylim: tuple[float, float] | None = (0, 1),
                 legend_below: bool = True, errors: Mapping[str, Sequence[float]] | None = None) -> Path:
    """One group of bars per subject (plus whatever the caller puts in ``subjects``), one bar per series;
    ``errors``: per series, the half-length of each bar's error bar (e.g. a standard error)."""
    import numpy as np

    plt = _pyplot()
    n = len(series)
    width = 0.8 / max(n, 1)
    x = np.arange(len(subjects))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(subjects) * max(1.0, n / 4)), 4.8))
    colors = series_colors(list(series))
    for i, (label, values) in enumerate(series.items()):
        role = role_of(label)
        hatch = ("//" if role == "oracle" else
                 ROUTER_HATCHES[router_rank(list(series), label) % len(ROUTER_HATCHES)] if role == "router" else "")
        ax.bar(x + (i - (n - 1) / 2) * width, values, width, label=label, color=colors[i], hatch=hatch,
               edgecolor="black" if hatch else None, linewidth=0.3,
               yerr=(errors or {}).get(label), error_kw={"elinewidth": 0.7, "capsize": 1.5})
    ax.set_xticks(x)
    ax.set_xticklabels(subjects, rotation=40, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(subjects) - 0.5)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        top = max((v for values in series.values() for v in values if v == v), default=ylim[1])
        ax.set_ylim(ylim[0], min(ylim[1], top * 1.08 + 0.01))
    else:
        ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if legend_below:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: tick labels vary in length
    else:
        ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def routing_distribution(path: Path, counts: Mapping[str, int], title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names = list(counts)
    total = max(sum(counts.values()), 1)
    ax.barh(names, [counts[n] / total for n in names], color=ROLE_COLORS["router"])
    ax.set_xlabel("share of routed documents")
    ax.set_xlim(0, min(1.0, max(counts[n] / total for n in names) + 0.12) if names else 1)
    ax.set_title(title)
    for i, name in enumerate(names):
        ax.text(counts[name] / total + 0.01, i, str(counts[name]), va="center", fontsize=8)
    return _save(fig, path)


def gains_with_intervals(path: Path, labels: Sequence[str], differences: Sequence[float],
                         intervals: Sequence[Sequence[float]], title: str,
                         ylabel: str = "router - best single (accuracy)", counts: Sequence[int] | None = None) -> Path:
    """One bar per label: the router's paired gain over the best single expert, with its 95 % interval."""
    import numpy as np

    plt = _pyplot()
    x = np.arange(len(labels))
    low = [d - i[0] for d, i in zip(differences, intervals)]
    high = [i[1] - d for d, i in zip(differences, intervals)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(labels) + 1.5), 4.2))
    ax.bar(x, differences, 0.6, color=ROLE_COLORS["router"], yerr=[low, high], capsize=3,
           error_kw={"elinewidth": 0.9, "ecolor": "black"}, label="router - best single (95 % interval)")
    ax.axhline(0, color=ROLE_COLORS["best single"], linewidth=1.2, label="best single expert")
    ax.set_xticks(x)
    names = [f"{label} (n={n})" for label, n in zip(labels, counts)] if counts is not None else list(labels)
    ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
