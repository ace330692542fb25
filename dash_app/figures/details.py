"""Selection Details: the grouped bar chart explaining a selection with one or two variables (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from dash_app.figures.encoding import COLORSCALE, app_template, escape
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.read.lineage import Forest

#: Qualitative colours for the second variable.
#: Above this many bars the values are in the tooltips only.
MAX_LABELLED_BARS = 24
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
    if isinstance(v, str) and v.isidentifier():  # "global_magnitude" reads "global magnitude"
        return v.replace("_", " ")
    if isinstance(v, (list, tuple)):
        return " → ".join(value_label(x) for x in v) or "none"
    return str(v)


def _label(var: Any, value: Any) -> str:
    """A variable's display text for ``value`` (its own labels when it has them)."""
    return str(var.label(value)) if hasattr(var, "label") else value_label(value)


def _level_index(var: Any, value: Any) -> tuple[int, Any]:
    """Sort key of an x category: the variable's level order, else the value itself."""
    levels = list(getattr(var, "levels", ()) or ())
    for i, lv in enumerate(levels):
        if lv == value and type(lv) is type(value):
            return (i, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (len(levels), float(value))
    return (len(levels) + 1, value_label(value))


def details_figure(forest: Forest, ids: Sequence[str], values: Mapping[str, Mapping[str, Any]],
                   x_var: Any | None, color_var: Any | None, metric: str, info: MetricInfo
                   ) -> go.Figure:
    """Bars of ``metric`` (mean per group) with ``x_var`` on x and ``color_var`` as colour.

    ``x_var``/``color_var`` are selection variables (``name``, ``levels``, ``label(value)``);
    with no ``x_var`` (one model, or models that do not differ), one bar per model.
    """
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    order: dict[str, tuple[int, Any]] = {}
    for rid in ids:
        m = forest.nodes[rid].metrics.get(metric)
        if m is None:
            continue
        if x_var is not None:
            xv = values.get(rid, {}).get(x_var.name)
            xl = _label(x_var, xv)
        else:
            xv = xl = forest.nodes[rid].name
        cl = _label(color_var, values.get(rid, {}).get(color_var.name)) if color_var is not None else ""
        groups[(xl, cl)].append(m)
        order.setdefault(xl, _level_index(x_var, xv))
    xcats = sorted({k[0] for k in groups}, key=lambda s: order.get(s, (0, s)))
    cl_order = [_label(color_var, v) for v in color_var.levels] if color_var is not None else []
    ccats = sorted({k[1] for k in groups},
                   key=lambda c: (cl_order.index(c) if c in cl_order else len(cl_order), c))
    x_name = x_var.name if x_var is not None else None
    color_name = color_var.name if color_var is not None else None
    fig = go.Figure(layout={"template": app_template()})
    # Value labels only where a bar is wide enough to hold one (a label per bar of 30+ bars
    # would run together): inside the bar's top, rotated when bars are narrow.
    slots = max(1, len(xcats) * len(ccats))  # the room a bar gets is one slot of the group
    nbars = len(groups)
    for i, c in enumerate(ccats):
        ys = [sum(groups[(x, c)]) / len(groups[(x, c)]) if (x, c) in groups else None for x in xcats]
        text = [escape(info.format_value(v)) if v is not None else "" for v in ys]
        fig.add_trace(go.Bar(
            x=[escape(x) for x in xcats], y=ys, name=escape(c) if color_name else escape(metric),
            text=text if nbars <= MAX_LABELLED_BARS else None, texttemplate="%{text}",
            textposition="auto" if slots > 8 else "outside", textangle=-90 if slots > 8 else 0,
            textfont={"size": 9 if slots > 8 else 11}, insidetextanchor="end", cliponaxis=False,
            constraintext="inside" if slots > 8 else "both",
            customdata=text,
            marker={"color": PALETTE[i % len(PALETTE)] if color_name else COLORSCALE[2][1]},
            hovertemplate="%{x}: %{customdata}<extra>%{fullData.name}</extra>"))
    yfmt = info.format.lstrip(",") if info.format.endswith("%") else None
    known = [v for g in groups.values() for v in g]
    yaxis: dict[str, Any] = {"title": {"text": escape(metric)}, "gridcolor": "#eef1f5"}
    if yfmt:
        yaxis["tickformat"] = yfmt
    if known:
        lo, hi = min(known), max(known)
        if hi > lo:  # zoom on the differences, leaving room for the value labels
            span = hi - lo
            yaxis["range"] = [max(0.0, lo - span * 0.6) if lo >= 0 else lo - span * 0.6, hi + span * 0.35]
        else:  # one value: from zero
            yaxis["range"] = [min(0.0, lo * 1.2), max(0.0, hi * 1.2) or 1.0]
    fig.update_layout(
        barmode="group", height=260, margin={"l": 60, "r": 10, "t": 30, "b": 50},
        plot_bgcolor="#ffffff", showlegend=bool(color_name), yaxis=yaxis,
        xaxis={"title": {"text": escape(x_name or "model")}, "type": "category"},
        # a vertical legend right of the bars: long value labels never run off the card
        legend={"title": {"text": "<br>+ ".join(escape(p) for p in (color_name or "").split(" + "))},
                "orientation": "v", "x": 1.02, "y": 1, "font": {"size": 11}},
        uniformtext={"minsize": 8, "mode": "hide"})
    return fig
