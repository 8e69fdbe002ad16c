"""PNG figures (matplotlib, Agg backend): per-subject accuracy and routing distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def grouped_bars(path: Path, subjects: Sequence[str], series: Mapping[str, Sequence[float]], title: str,
                 ylabel: str = "accuracy", ylim: tuple[float, float] | None = (0, 1),
                 legend_below: bool = True) -> Path:
    """One group of bars per subject (plus whatever the caller puts in ``subjects``), one bar per series."""
    import numpy as np

    plt = _pyplot()
    n = len(series)
    width = 0.8 / max(n, 1)
    x = np.arange(len(subjects))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(subjects) * max(1.0, n / 4)), 4.8))
    colors = plt.get_cmap("tab20").colors
    for i, (label, values) in enumerate(series.items()):
        hatch = "//" if "oracle" in label.lower() else ("" if "coe" not in label.lower() and "router" not in label.lower() else "..")
        ax.bar(x + (i - (n - 1) / 2) * width, values, width, label=label, color=colors[i % len(colors)], hatch=hatch,
               edgecolor="black" if hatch else None, linewidth=0.3)
    ax.set_xticks(x)
    ax.set_xticklabels(subjects, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if legend_below:
        ax.legend(fontsize=7, ncol=min(4, n), loc="upper center", bbox_to_anchor=(0.5, -0.32))
    else:
        ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def routing_distribution(path: Path, counts: Mapping[str, int], title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names = list(counts)
    total = max(sum(counts.values()), 1)
    ax.barh(names, [counts[n] / total for n in names], color="tab:blue")
    ax.set_xlabel("share of routed documents")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    for i, name in enumerate(names):
        ax.text(counts[name] / total + 0.01, i, str(counts[name]), va="center", fontsize=8)
    return _save(fig, path)
