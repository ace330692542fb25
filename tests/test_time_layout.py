"""The Model Map by time: x from start or end times, edges kept, runs in progress, dead ends."""

from __future__ import annotations

from typing import Any

import pytest

from dash_app.figures.overview import map_figure_for, map_layout_for
from mlflow_cc.analysis.map_layout import layout_forest
from mlflow_cc.analysis.time_layout import OFF_SCALE, TIME_UNITS, dead_ends, run_time
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
    now = T0 + 32 * MIN  # close after the others' ends (10..30 min): on the time scale
    running = layout_forest(study(running=True), "time_end", now_ms=now)
    axis = running.time
    assert axis is not None and axis.running == ("c",) and axis.now_ms == now and axis.now_on_scale
    assert minutes(running, "c") == pytest.approx(32)
    # by start time the run in progress keeps its start, and the axis reaches to now
    started = layout_forest(study(running=True), "time", now_ms=T0 + 45 * MIN)
    assert minutes(started, "c") == pytest.approx(40)
    assert started.time is not None and started.time.to_x(T0 + 45 * MIN) == pytest.approx(TIME_UNITS)
    # a run left RUNNING for a month does not squeeze the rest: now goes off the scale, just right
    month = T0 + 30 * 24 * 60 * MIN
    stale = layout_forest(study(running=True), "time_end", now_ms=month)
    axis = stale.time
    assert axis is not None and not axis.now_on_scale and axis.now_x == pytest.approx(TIME_UNITS + OFF_SCALE)
    assert stale.x["c"] == axis.now_x and minutes(stale, "a2") == pytest.approx(30)
    assert stale.x["a2"] == pytest.approx(TIME_UNITS)  # the finished models fill the scale
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


def test_figure_puts_models_on_a_date_axis_from_minutes_to_months() -> None:
    day = 24 * 60.0
    nodes = [node("base", None, 0, 5), node("<b>x</b>", "base", 90 * day, 90 * day + 3, sparsity=0.5),
             node("soon", "base", 10, 12, sparsity=0.9)]
    for n in nodes:
        n.metrics = {"accuracy": 0.9, "size_bytes": 100.0}
    f = build_forest(nodes)
    for mode in ("time", "time_end"):
        state = {"layout": mode, "color": "accuracy", "size": "size_bytes", "sel": ["soon"]}
        lay = map_layout_for(f, {}, state)
        fig = map_figure_for(f, {}, state, {}, lay)
        assert fig.layout.xaxis.type == "date" and fig.layout.xaxis.visible
        models = next(t for t in fig.data if t.name == "models")
        got = dict(zip(models.customdata, models.x))
        for rid, n in f.nodes.items():
            want = n.start_time if mode == "time" else n.end_time
            assert abs(got[rid] - want) < 1.0, (mode, rid)
        ring = next(t for t in fig.data if t.name == "selected")
        assert list(ring.customdata) == ["soon"] and abs(ring.x[0] - got["soon"]) < 1.0
        lo, hi = fig.layout.xaxis.range
        assert lo < min(got.values()) and hi > max(got.values())
        texts = [t for tr in fig.data if tr.name == "node labels" for t in tr.text]
        assert "&lt;b&gt;x&lt;/b&gt;" in texts  # user text shown as typed, never markup
        assert "dead end: nothing derived from it, though later models were" in [t.name for t in fig.data]
        # legend entries are in the map's key, drawn by the page (Plotly draws no legend)
        entries = {e["name"]: e for e in fig.layout.meta["key"]["entries"]}
        assert entries["dead end: nothing derived from it, though later models were"]["marker"]["symbol"] == "x-thin"
        assert not any(t.showlegend for t in fig.data)
