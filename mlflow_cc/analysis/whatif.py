"""Budget what-ifs: the best quality reachable as an efficiency budget relaxes (pure, no Dash).

For an efficiency metric ``e`` (size, nonzero bytes, latency: whatever the experiment logs) and
a quality metric ``q``, each with its direction (:class:`~mlflow_cc.metric_info.MetricInfo`), the
budget "``e`` at most b" (or "at least b" when higher ``e`` is better) admits the models whose
``e`` meets it; the best ``q`` among them is a step function of b. Its steps are exactly the
Pareto front of (``e``, ``q``) (:func:`mlflow_cc.analysis.pareto.pareto_front`), read from the
tightest budget to the loosest: each step is the model that first reaches a better quality.

Only models within the *other* budgets take part (:func:`outside_budgets` with the efficiency
metric's own budget left out: that is the budget being relaxed). Models with the very same pair
of values form one step (the first in input order stands for it, the others are listed as
``tied``). O(n log n) for n models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_cc.analysis.pareto import pareto_front
from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest

#: Efficiency metrics in order of preference for the what-if's default budget.
EFFICIENCY = ("nonzero_bytes", "size_bytes", "latency_ms", "nonzero_count", "param_count")


@dataclass(frozen=True)
class Step:
    """One step of the staircase: from ``budget`` on, ``quality`` is reachable with ``run_id``."""

    budget: float
    quality: float
    run_id: str
    #: Other models with the very same (budget, quality).
    tied: tuple[str, ...] = ()


@dataclass
class Staircase:
    """The steps, tightest budget first, and what the current budget reaches."""

    efficiency: str
    quality: str
    #: Whether a looser budget is a larger efficiency value (the metric's direction is "min").
    relaxes_up: bool
    quality_max: bool
    steps: list[Step]
    #: The current budget's limit on the efficiency metric (None: no budget on it).
    current: float | None = None
    #: Index in ``steps`` of the best step within the current budget (None: none fits it).
    current_step: int | None = None
    #: Models that took part (within the other budgets, both metrics present).
    considered: int = 0
    #: Models left out by the other budgets.
    outside_other: int = 0

    def within(self, budget: float) -> bool:
        """Whether ``budget`` (an efficiency value) satisfies the current budget."""
        if self.current is None:
            return True
        return budget <= self.current if self.relaxes_up else budget >= self.current


def outside_budgets(forest: Forest, budgets: Mapping[str, Any] | None,
                    skip: Iterable[str] = ()) -> set[str]:
    """Models outside a budget (a metric out of its [lo, hi], or missing), budgets in ``skip`` aside."""
    skipped = set(skip)
    active = {m: r for m, r in (budgets or {}).items() if r and m not in skipped}
    if not active:
        return set()
    out: set[str] = set()
    for rid, n in forest.nodes.items():
        for m, (lo, hi) in active.items():
            v = n.metrics.get(m)
            if v is None or math.isnan(v) or not lo <= v <= hi:
                out.add(rid)
                break
    return out


def staircase(points: Sequence[tuple[str, Any, Any]], efficiency_max: bool, quality_max: bool
              ) -> list[Step]:
    """Steps of the best quality as the budget relaxes, for ``(id, efficiency, quality)`` points.

    ``efficiency_max``: higher efficiency values are better (the budget is "at least b", relaxing
    downwards); else "at most b", relaxing upwards. Missing values take no part.
    """
    front = pareto_front(points, efficiency_max, quality_max)  # increasing efficiency
    if efficiency_max:
        front.reverse()
    on_front = set(front)
    values = {pid: (float(e), float(q)) for pid, e, q in points if pid in on_front}
    steps: list[Step] = []
    for pid in front:
        e, q = values[pid]
        if steps and (steps[-1].budget, steps[-1].quality) == (e, q):
            last = steps[-1]
            steps[-1] = Step(last.budget, last.quality, last.run_id, (*last.tied, pid))
        else:
            steps.append(Step(e, q, pid))
    return steps


def budget_limit(budget: Sequence[float] | None, relaxes_up: bool) -> float | None:
    """The side of a [lo, hi] budget that a relaxing budget moves: hi for "at most", lo for "at least"."""
    if not budget:
        return None
    return float(budget[1] if relaxes_up else budget[0])


def whatif(forest: Forest, infos: Mapping[str, MetricInfo], efficiency: str, quality: str,
           budgets: Mapping[str, Any] | None = None) -> Staircase:
    """The staircase for ``efficiency`` and ``quality`` over the models within the other budgets."""
    e_info, q_info = info_for(infos, efficiency), info_for(infos, quality)
    relaxes_up = not e_info.higher_is_better
    out = outside_budgets(forest, budgets, skip=[efficiency])
    pts = [(rid, n.metrics.get(efficiency), n.metrics.get(quality)) for rid, n in forest.nodes.items()
           if rid not in out]
    steps = staircase(pts, e_info.higher_is_better, q_info.higher_is_better)
    considered = sum(1 for _, e, q in pts if _finite(e) and _finite(q))
    current = budget_limit((budgets or {}).get(efficiency), relaxes_up)
    sc = Staircase(efficiency, quality, relaxes_up, q_info.higher_is_better, steps, current,
                   considered=considered, outside_other=len(out))
    fitting = [i for i, s in enumerate(steps) if sc.within(s.budget)]
    sc.current_step = fitting[-1] if fitting else None
    return sc


def _finite(v: Any) -> bool:
    try:
        return v is not None and not isinstance(v, bool) and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def default_pair(forest: Forest, infos: Mapping[str, MetricInfo], quality_hint: str | None = None
                 ) -> tuple[str | None, str | None]:
    """(efficiency, quality) to start with: the first efficiency metric logged, the primary metric."""
    names = forest.metric_names()
    eff = next((n for n in EFFICIENCY if n in names), None)
    if eff is None:
        eff = next((n for n in names if not info_for(infos, n).higher_is_better), names[0] if names else None)
    primary = [n for n in names if info_for(infos, n).primary and n != eff]
    hint = [quality_hint] if quality_hint in names and quality_hint != eff else []
    quality = (primary or hint or [n for n in names if n != eff and info_for(infos, n).higher_is_better]
               or [n for n in names if n != eff] or [None])[0]
    return eff, quality


def efficiency_options(forest: Forest, infos: Mapping[str, MetricInfo]) -> list[str]:
    """Metrics offered as budgets: the known efficiency metrics first, then every other metric."""
    names = forest.metric_names()
    known = [n for n in EFFICIENCY if n in names]
    return known + [n for n in names if n not in known]


def step_rows(forest: Forest, sc: Staircase, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The staircase as table rows: budget, best quality, gain over the previous step, model."""
    rows: list[dict[str, Any]] = []
    prev: float | None = None
    for i, s in enumerate(sc.steps):
        n = forest.nodes[s.run_id]
        rows.append({"step": i + 1, "budget": s.budget, "quality": s.quality,
                     "gain": None if prev is None else s.quality - prev,
                     "model": labels.get(s.run_id, n.name), "name": n.name, "run_id": s.run_id,
                     "tied": len(s.tied), "within_current": sc.within(s.budget)})
        prev = s.quality
    return rows
