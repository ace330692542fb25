"""The Compression Overview's two linked figures from one view state (pure).

Used by the views and by ``benchmarks/overview.py`` (which times exactly this).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from dash_app.figures.density import axis_is_log, ids_in_box, ids_in_cell, is_dense
from dash_app.figures.encoding import Encoding
from dash_app.figures.hover import hover_texts
from dash_app.figures.model_map import map_figure
from dash_app.figures.scatter import FULL_HOVER_MAX, axis_for, scatter_figure
from dash_app.figures.time_map import time_map_figure
from dash_app.state import LAYOUTS, excluded_ids
from mlflow_cc.analysis.map_layout import DEFAULT_BUDGET, MapLayout, layout_forest
from mlflow_cc.analysis.pareto import pareto_front
from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest

#: A selection this small is always made visible (e.g. one model opened from an MLflow link);
#: a bigger one (all descendants of a root) would defeat the collapsing.
REVEAL_MAX = 30


def map_layout_for(forest: Forest, infos: Mapping[str, MetricInfo], state: Mapping[str, Any],
                   budget: int = DEFAULT_BUDGET) -> MapLayout:
    """The map layout the state asks for; selected models are always revealed."""
    color = state.get("color")
    sel = state.get("sel") or ()
    return layout_forest(
        forest, state.get("layout") if state.get("layout") in LAYOUTS else "operation", budget=budget,
        expand=state.get("expand") or (), collapse=state.get("collapse") or (),
        reveal=sel if len(sel) <= REVEAL_MAX else (), focus=state.get("focus") or None, metric=color,
        higher_is_better=info_for(infos, color).higher_is_better if color else True,
        now_ms=time.time() * 1000.0)


def front_ids(forest: Forest, infos: Mapping[str, MetricInfo], x: str | None, y: str | None,
              excluded: set[str]) -> list[str]:
    """Pareto front of the models within budget, each metric in its own direction."""
    if not x or not y:
        return []
    pts = [(rid, n.metrics.get(x), n.metrics.get(y)) for rid, n in forest.nodes.items()
           if rid not in excluded]
    return pareto_front(pts, info_for(infos, x).higher_is_better, info_for(infos, y).higher_is_better)


def map_figure_for(forest: Forest, infos: Mapping[str, MetricInfo], state: Mapping[str, Any],
                   hover: Mapping[str, str], layout: MapLayout) -> go.Figure:
    """The Model Map for ``state`` (``hover`` needs only the laid-out models)."""
    enc = Encoding.build(forest, infos, state.get("color"), state.get("size"))
    draw = time_map_figure if layout.time is not None else map_figure  # by time: a date axis
    return draw(forest, layout, enc, infos, hover, set(state.get("sel") or ()),
                excluded_ids(forest, state.get("filters")))


def scatter_figure_for(forest: Forest, infos: Mapping[str, MetricInfo], state: Mapping[str, Any],
                       hover: Mapping[str, str]) -> go.Figure:
    """The Model Scatterplot for ``state`` with its Pareto front."""
    enc = Encoding.build(forest, infos, state.get("color"), state.get("size"))
    excluded = excluded_ids(forest, state.get("filters"))
    x, y = state.get("x"), state.get("y")
    return scatter_figure(forest, enc, infos, hover, x, y, set(state.get("sel") or ()), excluded,
                          front_ids(forest, infos, x, y, excluded))


def scatter_needs_hover(forest: Forest) -> bool:
    """Whether the scatterplot shows full tooltips (and so needs every model's)."""
    return len(forest) <= FULL_HOVER_MAX


def overview_figures(forest: Forest, infos: Mapping[str, MetricInfo], state: Mapping[str, Any],
                     hover: Mapping[str, str] | None = None, layout: MapLayout | None = None,
                     budget: int = DEFAULT_BUDGET) -> tuple[go.Figure, go.Figure, MapLayout]:
    """(Model Map, Model Scatterplot, the map's layout) for ``state``.

    Tooltips are computed for the models that need them when ``hover`` is not given.
    """
    if layout is None:
        layout = map_layout_for(forest, infos, state, budget)
    if hover is None:
        hover = hover_texts(forest, infos, None if scatter_needs_hover(forest) else layout.x)
    return (map_figure_for(forest, infos, state, hover, layout),
            scatter_figure_for(forest, infos, state, hover), layout)


def scatter_models(forest: Forest, state: Mapping[str, Any]) -> list[str]:
    """The models the scatterplot can select: both axis metrics logged, not filtered out."""
    x, y = state.get("x"), state.get("y")
    excluded = excluded_ids(forest, state.get("filters"))
    return [r for r, n in forest.nodes.items() if x in n.metrics and y in n.metrics and r not in excluded]


def scatter_is_dense(forest: Forest, state: Mapping[str, Any]) -> bool:
    """Whether the scatterplot for ``state`` draws the density layer (figures/density.py)."""
    return bool(state.get("x") and state.get("y")) and is_dense(len(scatter_models(forest, state)))


def dense_pick(forest: Forest, infos: Mapping[str, MetricInfo], state: Mapping[str, Any],
               event: Mapping[str, Any]) -> list[str]:
    """The models a click on a density cell (``cell``: its centre) or a box (``range``) picks."""
    x, y = state["x"], state["y"]
    ids = scatter_models(forest, state)
    if event.get("range"):
        rng = event["range"]
        return ids_in_box(forest, ids, x, y, rng["x"], rng["y"])
    both = [n for n in forest.nodes.values() if x in n.metrics and y in n.metrics]  # as scatter_figure
    xlog, ylog = (axis_is_log(axis_for(m, info_for(infos, m), [n.metrics[m] for n in both])) for m in (x, y))
    cx, cy = event["cell"]
    return ids_in_cell(forest, ids, x, y, xlog, ylog, float(cx), float(cy))
