"""The Model Map by time: x from start or end times, edges kept, runs in progress, dead ends."""

from __future__ import annotations

from typing import Any

import pytest

from mlflow_cc.analysis.map_layout import layout_forest
from mlflow_cc.analysis.time_layout import TIME_UNITS, dead_ends, run_time
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest

MIN = 60_000.0
T0 = 1_700_000_000_000  # ms since the epoch


def node(rid: str, parent: str | None, start_min: float, end_min: float | None, status: str = "FINISHED",
         **params: Any) -> ModelNode:
    return ModelNode(run_id=rid, name=rid, experiment_id="1", declared_parent_id=parent,
                     operation="prune" if parent else None, op_params=params, status=status,
                     start_time=int(T0 + start_min * MIN),
                     end_time=None if end_min is None else int(T0 + end_min * MIN))


def study(running: bool = False) -> Forest:
    # base (0-10), then a (12-20) and b (15-18) from base; a2 (25-30) from a; c (40-...) from a2.
    # b is a dead end: nothing came from it, and a2, c started after it ended.
    return build_forest([
        node("base", None, 0, 10),
        node("b", "base", 15, 18, sparsity=0.9),
        node("a", "base", 12, 20, sparsity=0.5),
        node("a2", "a", 25, 30, sparsity=0.7),
        node("c", "a2", 40, None if running else 45, status="RUNNING" if running else "FINISHED",
             sparsity=0.8),
    ])


def minutes(lay: Any, rid: str) -> float:
    return (lay.time.to_ms(lay.x[rid]) - T0) / MIN


def test_x_follows_start_times_and_edges_are_kept() -> None:
    f = study()
    lay = layout_forest(f, "time")
    assert lay.time is not None and lay.time.which == "start" and lay.columns == []
    assert [minutes(lay, r) for r in ("base", "a", "b", "a2", "c")] == pytest.approx([0, 12, 15, 25, 40])
    assert sorted(lay.x, key=lay.x.get) == ["base", "a", "b", "a2", "c"]
    assert lay.x["base"] == 0 and lay.x["c"] == pytest.approx(TIME_UNITS)
    assert sorted(lay.edges) == sorted([("base", "a"), ("base", "b"), ("a", "a2"), ("a2", "c")])
    # siblings in time order: a (started first) above b, and base on a's row (a chain reads as a line)
    assert lay.y["a"] < lay.y["b"] and lay.y["base"] == lay.y["a"] == lay.y["a2"] == lay.y["c"]


def test_by_end_time_and_runs_in_progress_sit_at_now() -> None:
    lay = layout_forest(study(), "time_end")
    assert [minutes(lay, r) for r in ("base", "b", "a", "a2", "c")] == pytest.approx([10, 18, 20, 30, 45])
    now = T0 + 60 * MIN
    running = layout_forest(study(running=True), "time_end", now_ms=now)
    assert running.time is not None and running.time.running == ("c",) and running.time.now_ms == now
    assert minutes(running, "c") == pytest.approx(60)
    # by start time the run in progress keeps its start, and the axis reaches to now
    started = layout_forest(study(running=True), "time", now_ms=now)
    assert minutes(started, "c") == pytest.approx(40)
    assert started.time is not None and started.time.to_x(now) == pytest.approx(TIME_UNITS)
    # without a now, a run in progress is placed at its start (the layout stays pure)
    assert run_time(study(running=True).nodes["c"], "end", None) == T0 + 40 * MIN


def test_dead_ends_are_leaves_work_went_on_without() -> None:
    assert dead_ends(study()) == {"b"}
    # the newest leaf is not a dead end, nor is a run in progress
    assert dead_ends(study(running=True)) == {"b"}
    lay = layout_forest(study(), "time")
    assert lay.time is not None and lay.time.dead_ends == ("b",)


def test_collapse_focus_and_unknown_times() -> None:
    f = study()
    collapsed = layout_forest(f, "time", collapse=["a"])
    assert set(collapsed.x) == {"base", "a", "b"} and collapsed.collapsed["a"].count == 2
    focused = layout_forest(f, "time", focus="a")
    assert set(focused.x) == {"a", "a2", "c"} and focused.focus == "a"
    # the focused subtree fills the axis: its own earliest and latest times
    assert focused.x["a"] == 0 and focused.x["c"] == pytest.approx(TIME_UNITS)
    nodes = [node("base", None, 0, 1), node("x", "base", 5, 6)]
    nodes.append(ModelNode(run_id="old", name="old", experiment_id="1", declared_parent_id="base",
                           operation="prune", start_time=0))
    lay = layout_forest(build_forest(nodes), "time")
    assert lay.time is not None and lay.time.unknown == ("old",) and lay.x["old"] == lay.x["base"]
    # one model: a span of at least a second, so x stays finite
    one = layout_forest(build_forest([node("base", None, 0, 1)]), "time")
    assert one.x == {"base": 0.0}
