"""Pareto front over two metrics, each with its direction (SPEC R3; pure, no Dash).

A model is on the front when no other model is at least as good on both metrics and
strictly better on one. Models with the very same pair of values do not dominate each
other, so all of them stay on the front. Missing values (``None``, NaN) take no part.

Both functions sort once and sweep, O(n log n) for n points (the textbook
"maxima of a point set" sweep, Kung, Luccio & Preparata 1975, in two dimensions).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

Id = TypeVar("Id", bound=Hashable)


def pareto_front(points: Sequence[tuple[Id, Any, Any]], x_max: bool, y_max: bool) -> list[Id]:
    """Ids of the non-dominated points, in increasing x (ties: input order).

    ``x_max`` / ``y_max`` say whether higher is better on each metric (a metric's
    ``MetricInfo.direction == "max"``). Points whose x or y is missing or NaN are left out.
    """
    front = _front(_oriented(points, x_max, y_max))
    # _front works with "higher is better" on both; give the ids back in the user's x order.
    front.sort(key=lambda p: (p[1] if x_max else -p[1], p[3]))
    return [p[0] for p in front]


def dominators(points: Sequence[tuple[Id, Any, Any]], x_max: bool, y_max: bool) -> dict[Id, Id]:
    """For each dominated point, the front point that dominates it with the closest x.

    Lets a view say "dominated by <model>" on hover. Points on the front and points with a
    missing value are not keys. O(n log n): one binary search on the front per point.
    """
    pts = _oriented(points, x_max, y_max)
    front = _front(pts)
    front.sort(key=lambda p: (p[1], -p[2]))  # x ascending; y descends along a front
    xs = [p[1] for p in front]
    on_front = {p[3] for p in front}
    out: dict[Id, Id] = {}
    for pid, x, y, idx in pts:
        if idx in on_front:
            continue
        # Among front points with x' >= x, the one with the smallest x' has the largest y'
        # (y' falls as x' grows on a front), so it dominates p if anything does.
        i = bisect_left(xs, x)
        if i < len(front):
            q = front[i]
            if q[2] >= y and (q[1], q[2]) != (x, y):
                out[pid] = q[0]
    return out


def _oriented(points: Sequence[tuple[Id, Any, Any]], x_max: bool, y_max: bool
              ) -> list[tuple[Id, float, float, int]]:
    """(id, x', y', input index) with both metrics turned into "higher is better"."""
    out: list[tuple[Id, float, float, int]] = []
    for i, (pid, x, y) in enumerate(points):
        fx, fy = _number(x), _number(y)
        if fx is None or fy is None:
            continue
        out.append((pid, fx if x_max else -fx, fy if y_max else -fy, i))
    return out


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _front(pts: list[tuple[Id, float, float, int]]) -> list[tuple[Id, float, float, int]]:
    """Maximal points when higher is better on both coordinates.

    Sweep from the largest x' down, one group of equal x' at a time: inside a group only the
    points with the group's largest y' can survive (the others are beaten on y at equal x),
    and they survive only if they beat, strictly on y', every point of larger x'.
    """
    ordered = sorted(pts, key=lambda p: (-p[1], -p[2], p[3]))
    out: list[tuple[Id, float, float, int]] = []
    best_y: float | None = None  # not -inf: a point at y' = -inf may still lead on x'
    i = 0
    while i < len(ordered):
        x, top = ordered[i][1], ordered[i][2]
        j = i
        while j < len(ordered) and ordered[j][1] == x:
            if ordered[j][2] == top and (best_y is None or top > best_y):
                out.append(ordered[j])
            j += 1
        best_y = top if best_y is None else max(best_y, top)
        i = j
    return out
