"""Selection Details: the grouped bar chart explaining a selection with one or two variables (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from dash_app.figures.encoding import COLORSCALE, escape
from mlflow_cc.lineage import Forest
from mlflow_cc.metric_info import MetricInfo

#: Qualitative colours for the second variable.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def value_label(v: Any) -> str:
    """A variable's value as a short category label."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return " → ".join(value_label(x) for x in v) or "none"
    return str(v)


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool) or v is None:
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, float(v))
    return (2, value_label(v))


def details_figure(forest: Forest, ids: Sequence[str], values: Mapping[str, Mapping[str, Any]],
                   x_var: str | None, color_var: str | None, metric: str, info: MetricInfo
                   ) -> go.Figure:
    """Bars of ``metric`` (mean per group) with ``x_var`` on x and ``color_var`` as colour.

    With no ``x_var`` (one model, or models that do not differ), one bar per model.
    """
    groups: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    raw: dict[str, Any] = {}
    for rid in ids:
        m = forest.nodes[rid].metrics.get(metric)
        if m is None:
            continue
        xv = values.get(rid, {}).get(x_var) if x_var else forest.nodes[rid].name
        cv = values.get(rid, {}).get(color_var) if color_var else None
        groups[(value_label(xv), value_label(cv) if color_var else "")].append(m)
        raw[value_label(xv)] = xv
    xcats = sorted({k[0] for k in groups}, key=lambda s: _sort_key(raw.get(s, s)))
    ccats = sorted({k[1] for k in groups})
    fig = go.Figure()
    for i, c in enumerate(ccats):
        ys = [sum(groups[(x, c)]) / len(groups[(x, c)]) if (x, c) in groups else None for x in xcats]
        text = [info.format_value(v) if v is not None else "" for v in ys]
        fig.add_trace(go.Bar(
            x=[escape(x) for x in xcats], y=ys, name=escape(c) if color_var else escape(metric),
            text=text, textposition="outside", cliponaxis=False,
            marker={"color": PALETTE[i % len(PALETTE)] if color_var else COLORSCALE[2][1]},
            hovertemplate="%{x}: %{text}<extra>%{fullData.name}</extra>"))
    yfmt = info.format.lstrip(",") if info.format.endswith("%") else None
    known = [v for g in groups.values() for v in g]
    yaxis: dict[str, Any] = {"title": {"text": escape(metric)}, "gridcolor": "#eef1f5"}
    if yfmt:
        yaxis["tickformat"] = yfmt
    if known:
        lo, hi = min(known), max(known)
        span = (hi - lo) or abs(hi) or 1.0
        yaxis["range"] = [max(0.0, lo - span * 0.6) if lo >= 0 else lo - span * 0.6, hi + span * 0.35]
    fig.update_layout(
        barmode="group", height=260, margin={"l": 60, "r": 10, "t": 30, "b": 50},
        plot_bgcolor="#ffffff", showlegend=bool(color_var), yaxis=yaxis,
        xaxis={"title": {"text": escape(x_var or "model")}, "type": "category"},
        legend={"title": {"text": escape(color_var or "")}, "orientation": "h", "y": 1.12, "x": 0},
        uniformtext={"minsize": 8, "mode": "hide"})
    return fig
