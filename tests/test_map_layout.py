"""Model Map layout: columns by operation and by step, sibling order, collapsing, focus, speed."""

from __future__ import annotations

from typing import Any

from mlflow_cc.analysis.map_layout import layout_forest, operation_keys, param_sort_key
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest
from testing.synthetic import random_forest


def node(rid: str, parent: str | None = None, op: str | None = None, t: int = 0,
         **params: Any) -> ModelNode:
    return ModelNode(run_id=rid, name=rid, experiment_id="1", declared_parent_id=parent, operation=op,
                     op_params=params, start_time=t, metrics={"accuracy": 0.5 + 0.01 * t})


def study() -> Forest:
    return build_forest([
        node("base", t=0),
        node("p9", "base", "prune", 1, sparsity=0.9),
        node("p3", "base", "prune", 2, sparsity=0.3),
        node("p5", "base", "prune", 3, sparsity=0.5),
        node("p5q", "p5", "quantize", 4, bits=8),
        node("p5c", "p5", "calibrate", 5, batches=8),
        node("p5cq", "p5c", "quantize", 6, bits=8),
        node("p5cqp", "p5cq", "prune", 7, sparsity=0.7),
        node("q", "base", "quantize", 8, bits=8),
    ])


def test_columns_by_operation_share_names_and_number_repeats() -> None:
    f = study()
    lay = layout_forest(f, "operation")
    labels = [c.label for c in lay.columns]
    assert labels[0] == "base"
    assert labels.index("prune") < labels.index("calibrate") < labels.index("quantize") < labels.index("prune 2")
    # the same operation lands in the same column, wherever it is in the tree
    assert lay.x["p5q"] == lay.x["p5cq"] == lay.x["q"]
    assert lay.x["p9"] == lay.x["p3"] == lay.x["p5"]
    assert operation_keys(f)["p5cqp"] == "prune 2"
    # every parent sits left of its children
    assert all(lay.x[p] < lay.x[c] for p, c in lay.edges)
    assert set(lay.x) == set(f.nodes)


def test_columns_by_step_follow_depth() -> None:
    f = study()
    lay = layout_forest(f, "step")
    assert [c.label for c in lay.columns] == ["base", "step 1", "step 2", "step 3", "step 4"]
    assert lay.x["p5cqp"] == 4 and lay.x["q"] == 1


def test_siblings_ordered_by_parameter_values_and_parent_on_first_childs_row() -> None:
    lay = layout_forest(study())
    assert lay.y["p3"] < lay.y["p5"] < lay.y["p9"]  # sparsity 0.3, 0.5, 0.9 (not start order)
    assert lay.y["base"] == lay.y["p3"]  # a chain reads as one line
    assert lay.y["p5"] == lay.y["p5c"] or lay.y["p5"] == lay.y["p5q"]
    assert len(set(lay.y.values())) == lay.rows
    assert param_sort_key({"s": 2}) < param_sort_key({"s": 10})


def test_collapse_summarises_and_expand_reveals() -> None:
    f = study()
    lay = layout_forest(f, collapse=["p5"], metric="accuracy")
    assert "p5c" not in lay.x and "p5" in lay.x
    summary = lay.collapsed["p5"]
    assert summary.count == 4
    assert summary.best == max(f.nodes[r].metrics["accuracy"] for r in ("p5q", "p5c", "p5cq", "p5cqp"))
    assert "p5" not in layout_forest(f, expand=["p5"], budget=1).collapsed
    assert "p5cqp" in layout_forest(f, collapse=["p5"], reveal=["p5cqp"]).x


def test_budget_collapses_instead_of_shrinking() -> None:
    f = random_forest(2000)
    lay = layout_forest(f, budget=150)
    assert len(lay.x) <= 150 + max(len(n.children) for n in f.nodes.values())
    hidden = sum(s.count for s in lay.collapsed.values())
    assert hidden + len(lay.x) == len(f)
    # random operation orders conflict; children still sit right of their parents
    for mode in ("operation", "step"):
        lay = layout_forest(f, mode, budget=5000)
        assert all(lay.x[p] < lay.x[c] for p, c in lay.edges)


def test_focus_lays_out_one_subtree() -> None:
    f = study()
    lay = layout_forest(f, focus="p5")
    assert set(lay.x) == {"p5", "p5q", "p5c", "p5cq", "p5cqp"}
    assert lay.x["p5"] == 0 and lay.columns[0].label == "prune"
    assert all(lay.x[p] < lay.x[c] for p, c in lay.edges)


def test_conflicting_operation_orders_do_not_break_layout() -> None:
    f = build_forest([node("b"), node("a1", "b", "prune", 1), node("a2", "a1", "quantize", 2),
                      node("c1", "b", "quantize", 3), node("c2", "c1", "prune", 4)])
    lay = layout_forest(f)
    assert set(lay.x) == set(f.nodes)
    assert len({c.label for c in lay.columns}) == len(lay.columns)
    assert all(lay.x[p] < lay.x[c] for p, c in lay.edges)


def test_layout_of_5000_models() -> None:
    f = random_forest(5000)
    layout_forest(f)
    layout_forest(f, "step")
    full = layout_forest(f, budget=10_000)
    assert len(full.x) == 5000
    # Its speed is measured by benchmarks/overview.py (overview_s: layout and figures at 5,000), not here.
