"""The Model Map by time: the map's figure over a date axis (pure).

The layout (:mod:`mlflow_cc.analysis.time_layout`) places models in map units, so the map's
edges, nodes, badges and selection rings are drawn by :func:`~dash_app.figures.model_map.map_figure`
as in the other layouts; here every x is turned into a time (ms since the epoch, which Plotly's
date axis reads) and the axis is shown, with ticks Plotly picks for the span (seconds to months).
Added on top, each with an entry in the map's key: runs still in progress (a dotted line from their start to
now) and the tips of abandoned branches (a small cross). Labels are cut to the room before the next
model on their row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dash_app.figures.encoding import Encoding, escape
from dash_app.figures.legend_key import legend_to_key
from dash_app.figures.model_map import CHAR_PX, COL_PX, map_figure
from mlflow_cc.analysis.map_layout import MapLayout
from mlflow_cc.analysis.time_layout import OFF_SCALE, TIME_UNITS, TimeAxis
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.read.lineage import Forest

RUNNING_COLOR = "#2a9d8f"
DEAD_END_COLOR = "#b4533a"
#: Map units left of the earliest model and right of the latest (room for the last labels).
LEFT_PAD, RIGHT_PAD = 0.6, 3.2
AXIS_TITLE = {"start": "when the run started", "end": "when the run ended (runs in progress: now)"}


def time_map_figure(forest: Forest, layout: MapLayout, enc: Encoding, infos: Mapping[str, MetricInfo],
                    hover: Mapping[str, str], selected: set[str], excluded: set[str]) -> go.Figure:
    """The Model Map of a by-time ``layout`` (``layout.time`` set) over a date axis."""
    axis = layout.time
    assert axis is not None, "a by-time layout"
    fig = map_figure(forest, layout, enc, infos, hover, selected, excluded)
    for trace in fig.data:
        if trace.x is not None and len(trace.x):
            trace.x = _to_ms(axis, trace.x)
    fig.add_traces(_running_traces(forest, layout, axis) + _dead_end_traces(forest, layout, enc, axis))
    legend_to_key(fig)
    _recut_labels(forest, layout, fig)
    fig.update_layout(
        annotations=_annotations(forest, layout, axis, fig.layout.annotations),
        xaxis={"visible": True, "type": "date", "side": "top", "showgrid": True, "gridcolor": "#eef1f5",
               "range": [axis.to_ms(-LEFT_PAD), axis.to_ms(TIME_UNITS + RIGHT_PAD)],
               "title": {"text": AXIS_TITLE[axis.which], "font": {"size": 12}},
               "tickfont": {"size": 11}, "hoverformat": "%Y-%m-%d %H:%M:%S", "automargin": True},
        margin={"l": 10, "r": 10, "t": 10, "b": 10})
    if axis.now_x is not None and axis.now_ms is not None:
        when = datetime.fromtimestamp(axis.now_ms / 1000.0, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        if not axis.now_on_scale:  # the times right of the models are not on the scale: shade them
            fig.add_vrect(x0=axis.to_ms(TIME_UNITS + OFF_SCALE / 2), x1=axis.to_ms(TIME_UNITS + RIGHT_PAD),
                          fillcolor="rgba(42,157,143,0.07)", line={"width": 0}, layer="below")
        fig.add_vline(x=axis.to_ms(axis.now_x), line={"color": RUNNING_COLOR, "width": 1, "dash": "dot"},
                      annotation={"text": "now" if axis.now_on_scale else f"now ({when}, off scale)",
                                  "font": {"size": 10, "color": RUNNING_COLOR}},
                      annotation_position="bottom right")
    return fig


def _to_ms(axis: TimeAxis, xs: Any) -> np.ndarray:
    """Map units to ms since the epoch, as float64 (float32 would round to minutes); NaN stays."""
    arr = np.asarray([np.nan if v is None else v for v in xs], dtype=np.float64)
    return axis.origin_ms + arr * axis.ms_per_unit


def _annotations(forest: Forest, layout: MapLayout, axis: TimeAxis,
                 annotations: Any) -> list[dict[str, Any]]:
    """The map's node-label annotations at their times (none since the labels are one text
    trace, see :func:`_recut_labels`; kept for annotations placed at a model)."""
    by_xy = {(layout.x[r], layout.y[r]): r for r in layout.x}
    room = _label_room(layout)
    out: list[dict[str, Any]] = []
    for a in annotations:
        d = a.to_plotly_json()
        rid = by_xy.get((d.get("x"), d.get("y"))) if d.get("xref") == "x" else None
        if rid is None:
            continue
        d["text"] = _cut(forest.nodes[rid].name, room(rid))
        d["x"] = axis.to_ms(layout.x[rid])
        out.append(d)
    return out


def _label_room(layout: MapLayout) -> Any:
    """Characters of label room right of each model: up to the next model on its row."""
    rows: dict[float, list[float]] = {}
    for r in layout.x:
        rows.setdefault(layout.y[r], []).append(layout.x[r])

    def room(rid: str) -> int:
        x = layout.x[rid]
        nxt = min((v for v in rows[layout.y[rid]] if v > x), default=None)
        units = (nxt - x) if nxt is not None else TIME_UNITS + RIGHT_PAD - x
        return max(6, min(40, int(units * COL_PX / CHAR_PX) - 3))
    return room


def _cut(name: str, room: int) -> str:
    return escape(name if len(name) <= room else name[: room - 1] + "…")


def _recut_labels(forest: Forest, layout: MapLayout, fig: go.Figure) -> None:
    """The "node labels" text trace (model_map.py), each cut to the room before the next model."""
    room = _label_room(layout)
    for trace in fig.data:
        if trace.name == "node labels" and trace.customdata is not None:
            trace.text = [_cut(forest.nodes[r].name, room(r)) for r in trace.customdata]


def _running_traces(forest: Forest, layout: MapLayout, axis: TimeAxis) -> list[go.Scatter]:
    """A dotted line from each visible run in progress's start to now (its end is not known yet)."""
    if not axis.running or axis.now_x is None:
        return []
    xs: list[float | None] = []
    ys: list[float | None] = []
    now = axis.to_ms(axis.now_x)
    for r in axis.running:
        start = forest.nodes[r].start_time or now
        xs.extend((float(start), now, None))
        ys.extend((layout.y[r], layout.y[r], None))
    return [go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", name="in progress (started → now)",
                       line={"color": RUNNING_COLOR, "width": 2, "dash": "dot"}, showlegend=True)]


def _dead_end_traces(forest: Forest, layout: MapLayout, enc: Encoding, axis: TimeAxis) -> list[go.Scatter]:
    """A small cross at the top right of each tip of an abandoned branch (the node keeps its colour;
    not clickable: a click there reaches the node)."""
    ids = [r for r in axis.dead_ends if r in layout.x]
    if not ids:
        return []
    return [go.Scatter(
        x=[axis.to_ms(layout.x[r] + enc.node_px(forest.nodes[r]) / 2 / COL_PX) for r in ids],
        y=[layout.y[r] - 0.38 for r in ids], mode="markers",
        marker={"symbol": "x-thin", "color": DEAD_END_COLOR, "size": 8, "line": {"width": 2.2,
                                                                                "color": DEAD_END_COLOR}},
        hoverinfo="skip", showlegend=True,
        name="dead end: nothing derived from it, though later models were")]
