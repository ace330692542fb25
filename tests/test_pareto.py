"""Pareto front: hand-checked cases and a brute-force comparison on random points."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from mlflow_cc.analysis.pareto import dominators, pareto_front


def brute_front(points: list[tuple[str, Any, Any]], x_max: bool, y_max: bool) -> set[str]:
    """O(n^2) definition: no other point is >= on both and > on one."""
    def ok(v: Any) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))
    pts = [(i, x if x_max else -x, y if y_max else -y) for i, x, y in points if ok(x) and ok(y)]
    return {i for i, x, y in pts
            if not any(qx >= x and qy >= y and (qx > x or qy > y) for _, qx, qy in pts)}


def test_size_vs_accuracy_by_hand() -> None:
    # x = size (lower is better), y = accuracy (higher is better).
    points = [("base", 400.0, 0.97), ("q8", 100.0, 0.96), ("p90", 220.0, 0.60),
              ("p50", 300.0, 0.965), ("p50q", 75.0, 0.95), ("bad", 410.0, 0.90)]
    assert pareto_front(points, x_max=False, y_max=True) == ["p50q", "q8", "p50", "base"]


def test_both_max_and_both_min() -> None:
    points = [("a", 1, 3), ("b", 2, 2), ("c", 3, 1), ("d", 1, 1), ("e", 3, 3)]
    assert pareto_front(points, x_max=True, y_max=True) == ["e"]
    assert pareto_front(points, x_max=False, y_max=False) == ["d"]
    assert pareto_front(points, x_max=True, y_max=False) == ["c"]  # beats d on x at equal y


def test_ties() -> None:
    # Identical points do not dominate each other: both stay.
    assert pareto_front([("a", 1, 1), ("b", 1, 1)], True, True) == ["a", "b"]
    # Equal x, lower y: dominated by the higher point at the same x.
    assert pareto_front([("a", 1, 1), ("b", 1, 2)], True, True) == ["b"]
    # Equal y, lower x: dominated.
    assert pareto_front([("a", 1, 2), ("b", 3, 2)], True, True) == ["b"]
    # Equal y but better x under "min": the smaller x wins.
    assert pareto_front([("a", 1, 2), ("b", 3, 2)], False, True) == ["a"]


def test_missing_values_are_left_out() -> None:
    points = [("a", None, 9.0), ("b", float("nan"), 9.0), ("c", 1.0, float("nan")), ("d", 1.0, 1.0)]
    assert pareto_front(points, True, True) == ["d"]
    assert pareto_front([], True, True) == []
    assert dominators(points, True, True) == {}


def test_infinities_are_values() -> None:
    points = [("a", math.inf, -math.inf), ("b", 0.0, 0.0)]
    assert pareto_front(points, True, True) == ["b", "a"]


def test_dominators_by_hand() -> None:
    points = [("a", 1, 3), ("b", 3, 1), ("c", 1, 1), ("d", 2, 0.5), ("e", 1, 3)]
    assert pareto_front(points, True, True) == ["a", "e", "b"]
    assert dominators(points, True, True) == {"c": "a", "d": "b"}


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    grid = rng.choice([3, 10, 1000])  # small grids force many ties
    points: list[tuple[str, Any, Any]] = []
    for i in range(n):
        x: Any = rng.randint(0, grid) / grid
        y: Any = rng.randint(0, grid) / grid
        if rng.random() < 0.05:
            x = None
        if rng.random() < 0.05:
            y = float("nan")
        points.append((f"m{i}", x, y))
    for x_max in (True, False):
        for y_max in (True, False):
            front = pareto_front(points, x_max, y_max)
            assert set(front) == brute_front(points, x_max, y_max)
            assert len(front) == len(set(front))
            x_of = {p[0]: p[1] for p in points}
            xs = [x_of[i] for i in front]
            assert xs == sorted(xs)
            dom = dominators(points, x_max, y_max)
            by_id = {p[0]: p for p in points}
            valid = {p[0] for p in points if p[1] is not None and p[2] == p[2]}
            assert set(dom) == valid - set(front)
            for loser, winner in dom.items():
                assert winner in front
                _, lx, ly = by_id[loser]
                _, wx, wy = by_id[winner]
                sx, sy = (1 if x_max else -1), (1 if y_max else -1)
                assert sx * wx >= sx * lx and sy * wy >= sy * ly and (wx, wy) != (lx, ly)
