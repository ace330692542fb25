"""Budget what-ifs: the staircase of the best quality as a budget relaxes (hand-computed cases)."""

from __future__ import annotations

import math

from mlflow_cc.analysis.model_labels import distinct_labels
from mlflow_cc.analysis.whatif import (
    Step,
    budget_limit,
    default_pair,
    efficiency_options,
    outside_budgets,
    staircase,
    step_rows,
    whatif,
)
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest


def test_min_budget_max_quality_steps_go_up_as_the_budget_grows() -> None:
    # size (lower better), accuracy (higher better)
    pts = [("a", 100, 0.90), ("b", 50, 0.80), ("c", 70, 0.85), ("d", 80, 0.82), ("e", 30, 0.60),
           ("f", 120, 0.88)]
    # budget "size <= b": b=30 -> e (0.60); 50 -> b (0.80); 70 -> c (0.85); 80 -> still c (d is worse);
    # 100 -> a (0.90); 120 -> still a (f worse).
    assert staircase(pts, efficiency_max=False, quality_max=True) == [
        Step(30, 0.60, "e"), Step(50, 0.80, "b"), Step(70, 0.85, "c"), Step(100, 0.90, "a")]


def test_max_efficiency_relaxes_downwards_and_min_quality() -> None:
    # sparsity (higher better: budget "at least b"), loss (lower better)
    pts = [("a", 0.9, 2.0), ("b", 0.7, 1.5), ("c", 0.5, 1.6), ("d", 0.3, 1.0), ("e", 0.95, 3.0)]
    # b=0.95 -> e (3.0); 0.9 -> a (2.0); 0.7 -> b (1.5); 0.5 -> still b; 0.3 -> d (1.0)
    assert staircase(pts, efficiency_max=True, quality_max=False) == [
        Step(0.95, 3.0, "e"), Step(0.9, 2.0, "a"), Step(0.7, 1.5, "b"), Step(0.3, 1.0, "d")]


def test_ties_make_one_step_and_equal_quality_at_a_looser_budget_is_no_step() -> None:
    pts = [("a", 10, 0.5), ("b", 10, 0.5), ("c", 20, 0.5), ("d", 10, 0.4), ("e", 30, 0.7)]
    # a and b share a step (first in input order stands for it); c reaches nothing better
    assert staircase(pts, False, True) == [Step(10, 0.5, "a", ("b",)), Step(30, 0.7, "e")]


def test_missing_and_nan_values_take_no_part() -> None:
    pts = [("a", None, 0.9), ("b", 5, math.nan), ("c", 7, 0.3), ("d", "x", 0.99)]
    assert staircase(pts, False, True) == [Step(7, 0.3, "c")]
    assert staircase([], False, True) == []


def _node(rid: str, parent: str | None = None, **metrics: float) -> ModelNode:
    return ModelNode(run_id=rid, name=rid, experiment_id="1", declared_parent_id=parent,
                     operation="prune" if parent else None, op_params={"sparsity": len(rid)} if parent else {},
                     metrics=metrics)


def forest() -> Forest:
    return build_forest([
        _node("base", size_bytes=100, accuracy=0.95, latency_ms=10),
        _node("p1", "base", size_bytes=60, accuracy=0.93, latency_ms=9),
        _node("p2", "base", size_bytes=40, accuracy=0.90, latency_ms=3),
        _node("p3", "base", size_bytes=20, accuracy=0.70, latency_ms=2),
        _node("p4", "base", size_bytes=50, accuracy=0.80, latency_ms=2.5),
    ])


INFOS = {"size_bytes": MetricInfo("size_bytes", "min"), "latency_ms": MetricInfo("latency_ms", "min"),
         "accuracy": MetricInfo("accuracy", "max", primary=True)}


def test_other_budgets_restrict_the_models_and_the_own_budget_is_marked() -> None:
    f = forest()
    full = whatif(f, INFOS, "size_bytes", "accuracy")
    assert [s.run_id for s in full.steps] == ["p3", "p2", "p1", "base"]
    assert full.current is None and full.current_step == 3 and full.considered == 5
    # a latency budget of at most 5 ms leaves out base and p1; the size budget is the one relaxed
    budgets = {"latency_ms": [2.0, 5.0], "size_bytes": [20.0, 45.0]}
    sc = whatif(f, INFOS, "size_bytes", "accuracy", budgets)
    assert [s.run_id for s in sc.steps] == ["p3", "p2"]
    assert sc.outside_other == 2 and sc.considered == 3
    assert sc.current == 45.0 and sc.current_step == 1  # p2 (40) fits "at most 45"
    edge = whatif(f, INFOS, "size_bytes", "accuracy", {"size_bytes": [20.0, 40.0]})
    assert edge.current_step == 1  # "at most 40" admits p2 at exactly 40
    tight = whatif(f, INFOS, "size_bytes", "accuracy", {"size_bytes": [10.0, 15.0]})
    assert tight.current_step is None  # nothing fits: no step within the current budget
    # a budget on the quality metric restricts too
    q = whatif(f, INFOS, "size_bytes", "accuracy", {"accuracy": [0.0, 0.92]})
    assert [s.run_id for s in q.steps] == ["p3", "p2"]


def test_budget_limit_and_outside_budgets() -> None:
    assert budget_limit([1.0, 5.0], relaxes_up=True) == 5.0
    assert budget_limit([1.0, 5.0], relaxes_up=False) == 1.0
    assert budget_limit(None, True) is None
    f = forest()
    assert outside_budgets(f, {"latency_ms": [2.0, 5.0], "size_bytes": None}) == {"base", "p1"}
    assert outside_budgets(f, {"latency_ms": [2.0, 5.0]}, skip=["latency_ms"]) == set()
    assert outside_budgets(f, {"missing": [0.0, 1.0]}) == set(f.nodes)


def test_defaults_options_and_rows_with_distinct_labels() -> None:
    f = forest()
    assert default_pair(f, INFOS) == ("size_bytes", "accuracy")
    assert efficiency_options(f, INFOS) == ["size_bytes", "latency_ms", "accuracy"]
    sc = whatif(f, INFOS, "size_bytes", "accuracy", {"size_bytes": [0.0, 45.0]})
    labels = distinct_labels(f, [s.run_id for s in sc.steps])
    rows = step_rows(f, sc, labels)
    assert [r["run_id"] for r in rows] == ["p3", "p2", "p1", "base"]
    assert len({r["model"] for r in rows}) == 4
    assert rows[0]["gain"] is None and abs(rows[1]["gain"] - 0.20) < 1e-12
    assert [r["within_current"] for r in rows] == [True, True, False, False]


def test_figure_and_csv() -> None:
    from dash_app.figures.whatif import whatif_figure
    from dash_app.views.whatif import staircase_csv

    f = forest()
    infos = {**INFOS, "sparsity": MetricInfo("sparsity", "max", format=".0%")}
    for n, s in zip(f.nodes.values(), (0.0, 0.3, 0.5, 0.9, 0.7)):
        n.metrics["sparsity"] = s
    sc = whatif(f, infos, "sparsity", "accuracy", {"sparsity": [0.6, 1.0]})
    # at least 90% sparse: p3 (0.70); 70%: p4 (0.80); 50%: p2 (0.90); 30%: p1 (0.93); 0%: base (0.95)
    assert [s.run_id for s in sc.steps] == ["p3", "p4", "p2", "p1", "base"] and sc.current == 0.6
    labels = {"p3": "=cmd() <b>x</b>"}
    fig = whatif_figure(sc, infos["sparsity"], infos["accuracy"], labels, [], (0.0, 0.9))
    assert fig.layout.xaxis.autorange == "reversed"  # looser (lower sparsity) to the right
    assert "at least" in fig.layout.xaxis.title.text
    steps = {rid for t in fig.data if t.customdata is not None for rid in t.customdata}
    assert steps == {"p3", "p4", "p2", "p1", "base"}
    hover = " ".join(h for t in fig.data if t.hovertext is not None for h in t.hovertext)
    assert "&lt;b&gt;x&lt;/b&gt;" in hover and "<b>x</b>" not in hover
    within = next(t for t in fig.data if t.name == "within the current budget")
    assert list(within.customdata) == ["p3", "p4"]
    # the legend is drawn by the page below the graph (views/legend_key.py), not by Plotly
    entries = fig.layout.meta["key"]["entries"]
    assert [e["name"] for e in entries] == ["best accuracy within the budget", "within the current budget",
                                            "needs a looser budget"]
    assert entries[0]["line"]["color"] == entries[1]["marker"]["color"] == "#3f6aa1"
    assert not any(t.showlegend for t in fig.data) and len(fig.layout.meta["export"]["legend"]) == 3
    rows = step_rows(f, sc, labels)
    text = staircase_csv(rows, "sparsity", "accuracy")
    head, first = text.splitlines()[:2]
    assert head.startswith("step,budget sparsity,best accuracy,gain,model")
    assert ",'=cmd() <b>x</b>," in first  # a formula-like title stays text in a spreadsheet
