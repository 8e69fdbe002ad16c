"""Accuracy-cost curve of a cost-aware router on held-out documents, with RouteLLM's summary numbers.

The router is swept over its cost weight: one setting (a fixed weight, chosen without labels) in
each interval between the weights at which some document's choice changes, so every share of
strong-expert calls the router can reach is on the curve. Every single expert is a point; the
random mix of the weak and the strong expert is a line; the oracle answers each document with its
cheapest correct expert. PGR (performance gap recovered) of a point is ``(accuracy - weak) /
(strong - weak)``. For a share x of documents sent to the strong expert the router's operating
point is the swept setting with the largest share <= x (read from routing alone, not from labels).
APGR is the mean PGR over x in [0, 1] (101 points); CPT(p) the smallest strong share whose operating
point recovers at least p of the gap.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.routers.cost import Budget, budget_tolerance, calibrate_cost_weight, choose

MAX_SWEEP = 20_000  # settings evaluated; more breakpoints than this are thinned evenly by rank
STORED_SWEEP = 400  # settings kept in the JSON and the plot (besides those the summary numbers use)
SHARE_GRID = np.linspace(0.0, 1.0, 101)
PGR_TOLERANCE = 1e-9  # a point that recovers exactly p of the gap counts for CPT(p), whatever the rounding
CHUNK = 64


def pareto_front(points: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of points no other point beats on both cost (lower) and accuracy (higher)."""
    order = sorted(range(len(points)), key=lambda i: (points[i]["cost"], -points[i]["accuracy"]))
    front, best = [], -np.inf
    for i in order:
        if points[i]["accuracy"] > best:
            front.append(i)
            best = points[i]["accuracy"]
    return sorted(front)


def weak_expert(singles: dict[str, dict[str, Any]], strong: str) -> str:
    """The cheapest useful expert: the cheapest single expert on the single-expert Pareto front."""
    names = [n for n in singles if n != strong]
    if not names:
        return strong
    front = [names[i] for i in pareto_front([singles[n] for n in names])]
    return min(front, key=lambda n: singles[n]["cost"])


def _point(choices: np.ndarray, correct: np.ndarray, costs: np.ndarray, strong: int, **extra: Any) -> dict[str, Any]:
    rows = np.arange(len(choices))
    return {"accuracy": float(correct[rows, choices].mean()), "cost": float(costs[choices].mean()),
            "strong_share": float((choices == strong).mean()), **extra}


def trapezoid_mean(values: np.ndarray, grid: np.ndarray) -> float:
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)) / (grid[-1] - grid[0]))


def choice_breakpoints(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """The sorted cost weights w > 0 at which some row's ``argmax(scores - w * costs)`` changes.

    As w grows each row's choice walks down the upper envelope of the lines score - w x cost
    toward cheaper experts; each step is the earliest crossing with a cheaper expert."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(scores))
    current = choose(scores, costs, 0.0)
    weight = np.zeros(len(scores))
    moving = np.ones(len(scores), dtype=bool)
    found = []
    for _ in range(scores.shape[1] - 1):
        cheaper = costs[current][:, None] - costs[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = np.where(cheaper > 0, (scores[rows, current][:, None] - scores) / cheaper, np.inf)
        crossing = np.maximum(crossing, weight[:, None])
        following = np.argmin(crossing, axis=1)
        next_weight = crossing[rows, following]
        moving &= np.isfinite(next_weight)
        if not moving.any():
            break
        found.append(next_weight[moving])
        weight = np.where(moving, next_weight, weight)
        current = np.where(moving, following, current)
    breakpoints = np.unique(np.concatenate(found)) if found else np.array([])
    return breakpoints[breakpoints > 0]


def weight_grid(scores: np.ndarray, costs: np.ndarray, most: int = MAX_SWEEP) -> np.ndarray:
    """0, a weight inside each interval between consecutive breakpoints, and one past the last."""
    breakpoints = choice_breakpoints(scores, costs)
    if len(breakpoints) > most - 1:
        breakpoints = breakpoints[np.unique(np.linspace(0, len(breakpoints) - 1, most - 1).round().astype(int))]
    if not len(breakpoints):
        return np.array([0.0])  # equal costs, or no row ever changes: every weight routes the same
    inside = (breakpoints[:-1] + breakpoints[1:]) / 2
    return np.concatenate([[0.0], inside, [breakpoints[-1] * 2]])


def sweep_points(scores: np.ndarray, correct: np.ndarray, costs: np.ndarray, strong: int,
                 weights: np.ndarray) -> list[dict[str, Any]]:
    """``_point`` of the router at each weight, computed in chunks of weights at once."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(scores))
    points = []
    for start in range(0, len(weights), CHUNK):
        chunk = weights[start:start + CHUNK]
        choices = np.argmax(scores[None, :, :] - chunk[:, None, None] * costs[None, None, :], axis=2)
        accuracy = correct[rows[None, :], choices].mean(axis=1)
        points += [{"accuracy": float(a), "cost": float(c), "strong_share": float(x), "cost_weight": float(w)}
                   for a, c, x, w in zip(accuracy, costs[choices].mean(axis=1), (choices == strong).mean(axis=1), chunk)]
    return points


def stored_sweep(sweep: Sequence[dict[str, Any]], keep: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most ``STORED_SWEEP`` settings evenly by weight rank, plus those in ``keep``, in weight order."""
    ranks = set(np.linspace(0, len(sweep) - 1, min(STORED_SWEEP, len(sweep))).round().astype(int).tolist())
    kept = {id(p) for p in keep}
    return [p for i, p in enumerate(sweep) if i in ranks or id(p) in kept]


def operating_points(sweep: Sequence[dict[str, Any]]) -> tuple[list[float], list[dict[str, Any]]]:
    """Each strong share the sweep reaches, ascending, and the setting that is the router's operating
    point there (of the settings with that share, the one with the lowest cost weight)."""
    by_share: dict[float, dict[str, Any]] = {}
    for point in sorted(sweep, key=lambda p: p["cost_weight"], reverse=True):
        by_share[point["strong_share"]] = point
    shares = sorted(by_share)
    return shares, [by_share[x] for x in shares]


def operating_point(points: tuple[list[float], list[dict[str, Any]]], share: float) -> dict[str, Any] | None:
    """The operating point with the largest strong share <= ``share``; None where every setting sends
    more documents to the strong expert (it can be so when the strong expert is not the most expensive)."""
    shares, settings = points
    index = bisect.bisect_right(shares, share + 1e-12) - 1
    return settings[index] if index >= 0 else None


def cost_curve(scores: np.ndarray, correct: np.ndarray, experts: Sequence[str], costs: np.ndarray,
               accuracy_choices: np.ndarray, strong: str | None = None, weak: str | None = None,
               calibration_scores: np.ndarray | None = None, own_costs: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the plot and the JSON show; ``accuracy_choices``: the accuracy router's columns.

    ``costs``: what choosing each column costs per document (the sweep, the router's points, the
    oracle, the random mix and the budgets are paid at these); ``own_costs``: each expert's own cost
    (default ``costs``), at which its single point stands, the reported costs are given and matching
    the strong expert is measured; the mean-cost budgets are fractions of the strong expert's own cost."""
    correct = np.asarray(correct, dtype=np.float64)  # float32 means put a point recovering exactly p below p
    experts = list(experts)
    own_costs = costs if own_costs is None else np.asarray(own_costs, dtype=np.float64)
    strong = strong or experts[int(np.argmax(costs))]
    strong_index = experts.index(strong)
    singles = {e: {"accuracy": float(correct[:, i].mean()), "cost": float(own_costs[i]),
                   "strong_share": float(i == strong_index)} for i, e in enumerate(experts)}
    weak = weak or weak_expert(singles, strong)
    weak_index = experts.index(weak)
    low, high = singles[weak]["accuracy"], singles[strong]["accuracy"]
    gap = high - low

    def pgr(accuracy: float) -> float | None:
        return (accuracy - low) / gap if gap > 0 else None

    sweep = sweep_points(scores, correct, costs, strong_index, weight_grid(scores, costs))
    accuracy_router = _point(np.asarray(accuracy_choices), correct, costs, strong_index)
    points = operating_points(sweep)
    on_grid = [operating_point(points, x) for x in SHARE_GRID]
    # a share below every setting's: the router cannot work there, so only the weak expert alone (PGR 0) can
    pgrs = [0.0 if p is None else pgr(p["accuracy"]) for p in on_grid]

    def cpt(level: float) -> float | None:
        reached = [x for x, point in zip(*points)
                   if (value := pgr(point["accuracy"])) is not None and value >= level - PGR_TOLERANCE]
        return float(min(reached)) if reached else None

    cheapest_correct = np.where(correct > 0, costs[None, :], np.inf)
    oracle_choice = np.where(np.isfinite(cheapest_correct).any(axis=1), cheapest_correct.argmin(axis=1),
                             int(np.argmin(costs)))
    oracle = {**_point(oracle_choice, correct, costs, strong_index), "accuracy": float(correct.max(axis=1).mean())}
    random_mix = [{"strong_share": float(s), "accuracy": float((1 - s) * low + s * high),
                   "cost": float((1 - s) * costs[weak_index] + s * costs[strong_index])}
                  for s in np.linspace(0, 1, 11)]
    matching = [p for p in sweep if p["accuracy"] >= high]
    shown = stored_sweep(sweep, [p for p in on_grid if p is not None]
                         + ([min(matching, key=lambda p: p["cost"])] if matching else []))
    candidates = shown + [{**v, "name": k} for k, v in singles.items()]
    result: dict[str, Any] = {
        "documents": int(len(correct)), "experts": experts, "costs": dict(zip(experts, own_costs.tolist())),
        "strong": strong, "weak": weak, "singles": singles, "oracle": oracle, "random_mix": random_mix,
        "accuracy_router": accuracy_router, "settings_swept": len(sweep), "sweep": shown,
        "pareto_front": [candidates[i] for i in pareto_front(candidates)],
        "APGR": None if gap <= 0 else trapezoid_mean(np.array(pgrs, dtype=float), SHARE_GRID),
        "CPT_50": cpt(0.5), "CPT_80": cpt(0.8),
        "at_share": {f"{x:.1f}": {"router": None if (point := operating_point(points, x)) is None else point["accuracy"],
                                  "random_mix": float((1 - x) * low + x * high)} for x in (0.2, 0.3, 0.5, 0.8)},
        "cost_to_match_strong": (None if not matching else
                                 float(min(p["cost"] for p in matching) / singles[strong]["cost"])),
    }
    if calibration_scores is not None:
        result["calibrated_budgets"] = calibrated_budgets(calibration_scores, scores, correct, experts, costs, strong,
                                                          float(own_costs[strong_index]))
    return result


def cascade_curve(scores: np.ndarray, correct: np.ndarray, experts: Sequence[str], costs: np.ndarray,
                  calibration_scores: np.ndarray) -> dict[str, Any]:
    """:func:`cost_curve` of a cascade ([first, second]): escalating pays the first expert's cost plus the
    second's, so the sweep runs on those paid costs (choosing by gain > cost_weight x cost(second)), while
    each expert's own point stands at its own cost."""
    first_cost, second_cost = float(costs[0]), float(costs[1])
    paid = np.array([first_cost, first_cost + second_cost])
    accuracy_choices = (np.asarray(scores)[:, 1] > np.asarray(scores)[:, 0]).astype(int)
    curve = cost_curve(scores, correct, experts, paid, accuracy_choices, strong=experts[1], weak=experts[0],
                       calibration_scores=calibration_scores, own_costs=np.array([first_cost, second_cost]))
    curve["cascade"] = {"first": experts[0], "second": experts[1],
                        "note": "the first expert answers every document; strong_share is the share escalated to "
                                "the second, and every cost includes the first expert's"}
    return curve


def calibrated_budgets(calibration_scores: np.ndarray, scores: np.ndarray, correct: np.ndarray,
                       experts: Sequence[str], costs: np.ndarray, strong: str,
                       reference_cost: float | None = None) -> list[dict[str, Any]]:
    """Strong-share and mean-cost budgets calibrated on the router's calibration documents, applied
    to the held-out ones: what a deployed budget gives, with the stated tolerance."""
    correct = np.asarray(correct, dtype=np.float64)
    strong_index = list(experts).index(strong)
    budgets = [Budget(share=p, expert=strong) for p in (0.2, 0.3, 0.5, 0.8)]
    reference = float(costs[strong_index]) if reference_cost is None else reference_cost
    budgets += [Budget(mean_cost=round(f * reference, 6)) for f in (0.3, 0.5)]
    rows = []
    for budget in budgets:
        try:
            weight = calibrate_cost_weight(calibration_scores, costs, budget, list(experts))
        except ConfigError as error:  # e.g. 30 % of the strong cost is below the cheapest expert's cost
            rows.append({"budget": budget.describe(), "unreachable": str(error)})
            continue
        point = _point(choose(scores, costs, weight), correct, costs, strong_index)
        target = budget.share if budget.share is not None else budget.mean_cost
        held = point["strong_share"] if budget.share is not None else point["cost"]
        tolerance = budget_tolerance(calibration_scores, costs, budget, list(experts), weight, len(scores))
        rows.append({"budget": budget.describe(), "cost_weight": weight, **point, "held_out_measure": held,
                     "target": target, "tolerance": tolerance, "holds": bool(held <= target + tolerance)})
    return rows


LABEL_OFFSETS = ((3, 3), (3, -8), (-3, 3), (-3, -8), (3, 10), (-3, 10), (3, -15), (-3, -15))


def label_singles(ax: Any, curve: dict[str, Any]) -> None:
    """Names each single expert's point, moving a label to the first offset where its box (measured in
    points at the axes' current scale) overlaps no label placed before it."""
    from matplotlib.textpath import TextPath

    ax.autoscale_view()
    to_points = 72.0 / ax.figure.dpi
    placed: list[tuple[float, float, float, float]] = []
    for name, point in sorted(curve["singles"].items(), key=lambda item: (item[1]["cost"], -item[1]["accuracy"])):
        x, y = ax.transData.transform((point["cost"], point["accuracy"])) * to_points
        extent = TextPath((0, 0), name, size=6).get_extents()
        width, height = extent.width + 2, 8.0
        for dx, dy in LABEL_OFFSETS:
            left = x + dx if dx > 0 else x + dx - width
            box = (left, y + dy, left + width, y + dy + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(name, (point["cost"], point["accuracy"]), fontsize=6, xytext=(dx, dy), textcoords="offset points",
                    ha="left" if dx > 0 else "right")


def plot_cost_curve(path: Path, curve: dict[str, Any], title: str) -> Path:
    from benchcoe_plugins.training.plots import EXPERT_COLORS, ROLE_COLORS, _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    sweep = sorted(curve["sweep"], key=lambda p: p["cost"])
    ax.plot([p["cost"] for p in sweep], [p["accuracy"] for p in sweep], "-", color=ROLE_COLORS["router"],
            label="cascade swept over its escalation threshold" if curve.get("cascade") else "router swept over cost weight",
            zorder=2)
    mix = curve["random_mix"]
    ax.plot([p["cost"] for p in mix], [p["accuracy"] for p in mix], "--", color="black", alpha=0.6,
            label=(f"random escalation {curve['weak']} -> {curve['strong']}" if curve.get("cascade")
                   else f"random mix {curve['weak']} / {curve['strong']}"))
    best = max(curve["singles"], key=lambda name: curve["singles"][name]["accuracy"])
    for name, point in curve["singles"].items():
        ax.scatter(point["cost"], point["accuracy"], zorder=3,
                   color=ROLE_COLORS["best single"] if name == best else EXPERT_COLORS[0])
    label_singles(ax, curve)
    ax.scatter([], [], color=ROLE_COLORS["best single"], label=f"best single expert ({best})")
    ax.scatter([], [], color=EXPERT_COLORS[0], label="other single experts")
    router = curve["accuracy_router"]
    ax.scatter(router["cost"], router["accuracy"], marker="s", color=ROLE_COLORS["router"], edgecolor="black",
               zorder=4, label="accuracy router (cost weight 0)")
    ax.scatter(curve["oracle"]["cost"], curve["oracle"]["accuracy"], marker="*", s=140, color=ROLE_COLORS["oracle"],
               zorder=4, label="oracle (cheapest correct expert)")
    front = sorted(curve["pareto_front"], key=lambda p: p["cost"])
    ax.step([p["cost"] for p in front], [p["accuracy"] for p in front], where="post", color="black", lw=1.0,
            ls=":", zorder=5, label="Pareto front (router settings and single experts)")
    ax.set_xlabel("mean cost per document (" + curve.get("cost_label", "cost") + ")")
    ax.set_ylabel(f"{curve.get('documents_kind', 'held-out')} accuracy")
    summary = ", ".join(f"{k} {v:.3f}" for k, v in (("APGR", curve["APGR"]), ("CPT(50%)", curve["CPT_50"]),
                                                    ("CPT(80%)", curve["CPT_80"])) if v is not None)
    ax.set_title(f"{title}\n{summary}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
