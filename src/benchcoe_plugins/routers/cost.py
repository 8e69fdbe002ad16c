"""Cost-aware routing: expected accuracy minus ``cost_weight`` x cost, or the same under a budget.

A router that scores each expert's chance to answer (``expected_accuracy``) picks, per
document, ``argmax_e  score[e] - cost_weight * cost[e]``. A budget fixes ``cost_weight``
instead: the smallest weight whose choices on the router's calibration documents (held-out
scores stored at training time, see ``QueryRouter.calibration_scores_``) keep the mean cost
per document <= ``mean_cost``, or the share of documents sent to ``expert`` (default: the most
expensive one) <= ``share``, as RouteLLM calibrates its threshold. Raising the weight never
raises a document's chosen cost, so the mean cost and the most expensive expert's share fall
monotonically and bisection finds it; for a cheaper expert's share, which need not fall
monotonically, bisection returns a weight that keeps the budget, not always the smallest.
``cost_weight = 0`` without a budget is the accuracy router unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchcoe_plugins.core.documents import RoutingDocument
from benchcoe_plugins.core.errors import ConfigError, RouterFormatError, brief
from benchcoe_plugins.routers.base import RouteDecision, Router

BISECTION_STEPS = 60
TOLERANCE_SIGMAS = 3.0


@dataclass(frozen=True)
class Budget:
    """``mean_cost``: mean cost per document <= it; ``share``: documents sent to ``expert`` <= it
    (a tuple of router experts when one configured expert plays several of them)."""

    mean_cost: float | None = None
    share: float | None = None
    expert: str | tuple[str, ...] | None = None

    def describe(self) -> dict[str, Any]:
        expert = list(self.expert) if isinstance(self.expert, tuple) else self.expert
        return {k: v for k, v in (("mean_cost", self.mean_cost), ("share", self.share), ("expert", expert))
                if v is not None}


def is_finite_non_negative(value: Any) -> bool:
    """A number (not a bool) that is finite and >= 0: what a cost, a cost weight or a budget must be."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def finite_non_negative(value: Any, where: str) -> float:
    if not is_finite_non_negative(value):
        raise ConfigError(f"{where}: {value!r} must be a finite number >= 0.")
    return float(value)


def parameter_counts(path: str | Path | None = None) -> dict[str, float]:
    """Model -> billions of parameters used per token (active parameters of a mixture of experts)
    from a JSON file like the shipped ``tasks/mmlu_pro/parameter_counts.json``."""
    if path is None:
        from benchcoe_plugins.resources import resource_dir

        path = resource_dir("tasks") / "mmlu_pro" / "parameter_counts.json"
    try:
        models = json.loads(Path(path).read_text())["models"]
        counts = {name: entry["active_parameters"] if "active_parameters" in entry else entry["parameters"]
                  for name, entry in models.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"{path}: not a parameter-count file ({brief(error)}); expected "
                          f'{{"models": {{NAME: {{"parameters": 8.0}}}}}}.') from None
    return {name: finite_non_negative(count, f"{path}: {name}") for name, count in counts.items()}


def cost_vector(experts: Sequence[str], costs: Mapping[str, float], where: str = "costs") -> np.ndarray:
    missing = [e for e in experts if e not in costs]
    if missing:
        raise ConfigError(f"{where}: no cost for expert(s) {missing}, which the router routes to. Give each one "
                          f"'cost: N' (per document) or 'parameters: N' (billions; 'active_parameters' for a "
                          f"mixture of experts).")
    return np.array([float(costs[e]) for e in experts], dtype=np.float64)


def choose(scores: np.ndarray, costs: np.ndarray, cost_weight: float) -> np.ndarray:
    """Column of ``argmax(scores - cost_weight * costs)`` per row (first on ties)."""
    return np.argmax(np.asarray(scores, dtype=np.float64) - cost_weight * costs[None, :], axis=1)


def budget_measure(choices: np.ndarray, costs: np.ndarray, budget: Budget, experts: Sequence[str]) -> np.ndarray:
    """Per-document value whose mean the budget bounds: the chosen cost, or 1 where ``expert`` is chosen."""
    if budget.share is not None:
        columns = [experts.index(name) for name in budget_experts(budget, experts, costs)]
        return np.isin(choices, columns).astype(np.float64)
    return costs[choices]


def budget_experts(budget: Budget, experts: Sequence[str], costs: np.ndarray) -> tuple[str, ...]:
    """The router experts a share budget counts: ``budget.expert`` (one or several), default the most expensive."""
    if budget.expert is None:
        return (experts[int(np.argmax(costs))],)
    names = budget.expert if isinstance(budget.expert, tuple) else (budget.expert,)
    unknown = [name for name in names if name not in experts]
    if unknown:
        raise ConfigError(f"budget.expert: {unknown} not among the router's experts {list(experts)}.")
    return names


def budget_target(budget: Budget) -> float:
    if (budget.mean_cost is None) == (budget.share is None):
        raise ConfigError("budget: give exactly one of 'mean_cost: B' (mean cost per document) or 'share: p' "
                          "(largest share of documents for budget.expert, default the most expensive expert).")
    if budget.share is not None and not 0 <= budget.share <= 1:
        raise ConfigError(f"budget.share: {budget.share} must lie in [0, 1].")
    return finite_non_negative(budget.share if budget.share is not None else budget.mean_cost, "budget")


def calibrate_cost_weight(scores: np.ndarray, costs: np.ndarray, budget: Budget, experts: Sequence[str]) -> float:
    """The smallest cost weight whose choices on ``scores`` keep the budget (see module doc)."""
    target = budget_target(budget)
    if not np.isfinite(scores).all():
        raise RouterFormatError("the router's calibration scores hold NaN or infinite values; re-train it "
                                "(benchcoe train --router query).")

    def measure(weight: float) -> float:
        return float(budget_measure(choose(scores, costs, weight), costs, budget, experts).mean())

    if measure(0.0) <= target:
        return 0.0
    gaps = np.diff(np.unique(costs))
    spread = float(np.ptp(scores)) if scores.size else 0.0
    high = (spread + 1.0) / float(gaps.min()) if len(gaps) else 0.0  # every document on the cheapest expert
    if not len(gaps) or measure(high) > target:
        if budget.share is not None:
            raise ConfigError(f"budget {budget.describe()} cannot be met: a cost weight only moves documents to "
                              f"cheaper experts, and the budget's expert is among the cheapest the router uses. "
                              f"Raise the share, or name a more expensive budget.expert.")
        raise ConfigError(f"budget {budget.describe()} cannot be met even by sending every document to the "
                          f"cheapest expert (cost {costs.min():g}); raise the budget.")
    low = 0.0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if measure(middle) <= target else (middle, high)
    return high


def budget_tolerance(scores: np.ndarray, costs: np.ndarray, budget: Budget, experts: Sequence[str],
                     cost_weight: float, held_out_documents: int) -> float:
    """How far the held-out measure may exceed the target by sampling alone: ``TOLERANCE_SIGMAS``
    standard errors of the difference between two means (calibration vs. held-out documents)."""
    values = budget_measure(choose(scores, costs, cost_weight), costs, budget, experts)
    spread = float(values.std()) if budget.share is None else math.sqrt(max(budget.share * (1 - budget.share), 0.0))
    return TOLERANCE_SIGMAS * spread * math.sqrt(1 / max(len(values), 1) + 1 / max(held_out_documents, 1))


class CostAwareRouter:
    """Wraps a fitted router that has ``expected_accuracy``; routes by accuracy and cost."""

    def __init__(self, router: Router, costs: Mapping[str, float], cost_weight: float | None = None,
                 budget: Budget | None = None) -> None:
        if router.kind != "query" or not callable(getattr(router, "expected_accuracy", None)):
            raise ConfigError(f"cost_weight/budget need a router that scores every expert's accuracy (kind 'query'); "
                              f"this router is of kind {router.kind!r}.")
        if cost_weight is not None and budget is not None:
            raise ConfigError("give either cost_weight or budget, not both.")
        if cost_weight is not None:
            finite_non_negative(cost_weight, "cost_weight")
        self.router = router
        self.experts_ = list(router.experts_)
        self.costs_ = cost_vector(self.experts_, costs)
        self.budget = budget
        self.calibration: dict[str, Any] = {}
        if budget is not None:
            scores = router.calibration_scores()
            self.cost_weight_ = calibrate_cost_weight(scores, self.costs_, budget, self.experts_)
            self.calibration = {
                "documents": int(len(scores)),
                "measure": round(float(budget_measure(choose(scores, self.costs_, self.cost_weight_), self.costs_,
                                                      budget, self.experts_).mean()), 6)}
        else:
            self.cost_weight_ = float(cost_weight or 0.0)

    @property
    def kind(self) -> str:
        return self.router.kind

    def decide(self, documents: Sequence[RoutingDocument]) -> list[RouteDecision]:
        if self.budget is None and self.cost_weight_ == 0:
            return self.router.decide(documents)
        from benchcoe_plugins.routers.subject import route_readable

        return route_readable(documents, self._decide_readable)

    def _decide_readable(self, documents: list[RoutingDocument]) -> list[RouteDecision]:
        scores = self.router.expected_accuracy(documents)
        reason = f"cost-aware (cost_weight {self.cost_weight_:.6g})"
        return [RouteDecision(self.experts_[i], float(row[i]), None, reason)
                for row, i in zip(scores, choose(scores, self.costs_, self.cost_weight_).tolist())]

    def predict(self, documents: Sequence[RoutingDocument]) -> list[str | None]:
        return [decision.expert for decision in self.decide(documents)]

    def describe(self) -> dict[str, Any]:
        return {"cost_weight": self.cost_weight_, "budget": self.budget.describe() if self.budget else None,
                "costs": dict(zip(self.experts_, self.costs_.tolist())), "calibration": self.calibration}


def calibration_missing(folder: str) -> RouterFormatError:
    return RouterFormatError(f"router {folder!r} stores no calibration scores, which a budget needs; re-train it "
                             f"with this version (benchcoe train --router query), or give cost_weight instead.")


def cascade_gain_threshold(router: Router, config: Any) -> float:
    """The expected gain above which a cascade escalates, from the config's ``cost_weight`` or ``budget``:
    ``cost_weight x cost(second)``. A budget fixes the weight on the cascade's calibration documents,
    where escalating costs both experts (the first answered already) and a share budget counts the
    second expert's share. No cost setting: 0 (escalate wherever the second is expected to do better)."""
    if config.cost_weight is None and config.budget is None:
        return 0.0
    if getattr(router, "mode_", "cascade") == "best":
        raise ConfigError(f"the cascade's guard sends every document to {router.best_expert_} (when it was trained, "
                          f"escalating showed no clear accuracy gain), so {'budget' if config.budget else 'cost_weight'} "
                          f"would have no effect; drop it, or re-train the cascade with --costs or --no-guard.")
    experts = list(router.experts_)
    costs = cost_vector(experts, config.router_costs(experts), "the cascade's experts")
    paid = np.array([costs[0], costs[0] + costs[1]])
    if config.budget is None:
        return finite_non_negative(config.cost_weight, "cost_weight") * float(costs[1])
    budget = config.budget
    if budget.share is not None:
        if budget.expert not in (None, router.second, config.played_by(router.second)):
            raise ConfigError(f"budget.expert {budget.expert!r}: a cascade's share budget counts its second expert "
                              f"{config.played_by(router.second)!r}; drop budget.expert or name that one.")
        budget = replace(budget, expert=router.second)
    return calibrate_cost_weight(router.calibration_scores(), paid, budget, experts) * float(costs[1])
