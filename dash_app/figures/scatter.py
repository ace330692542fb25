"""The Model Scatterplot: any two metrics, map encodings, the Pareto front (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from dash_app.figures.density import axis_is_log, density_trace, is_dense
from dash_app.figures.encoding import (
    SELECT_COLOR,
    Encoding,
    app_template,
    colors_for,
    escape,
)
from dash_app.figures.legend_key import legend_to_key
from mlflow_cc.metric_info import MetricInfo, format_problem, info_for
from mlflow_cc.read.lineage import Forest

FRONT_COLOR = "#d62728"
#: The Pareto front's models are labelled by name when there are at most this many.
FRONT_LABELS_MAX = 12
#: Longer names are cut in the labels (the tooltip has the full name).
LABEL_CHARS = 28
#: Above this many models the scatterplot's tooltips are short (name, operation, x, y):
#: full tooltips for thousands of points would dominate what the browser downloads.
FULL_HOVER_MAX = 1000


def axis_for(name: str, info: MetricInfo, values: Sequence[float]) -> dict[str, object]:
    axis: dict[str, object] = {"title": {"text": escape(f"{name} ({'higher' if info.higher_is_better else 'lower'} is better)")},
                               "gridcolor": "#eef1f5", "zeroline": False}
    pos = [v for v in values if v > 0]
    if info.format == "bytes" or (pos and len(pos) == len(values) and max(pos) / min(pos) > 50):
        axis.update(log_ticks(pos))
    if info.format == "bytes":
        axis["tickformat"], axis["ticksuffix"] = "~s", "B"
    elif info.format.endswith("%"):
        axis["tickformat"] = info.format.lstrip(",")
    return axis


def log_ticks(values: Sequence[float]) -> dict[str, object]:
    """A log axis whose labels are only the major ticks: powers of ten when the values span a
    decade or more (unlabelled minor ticks in between), else every digit (a few full labels)."""
    pos = [v for v in values if v > 0]
    wide = bool(pos) and max(pos) / min(pos) >= 10
    return {"type": "log", "dtick": 1 if wide else "D1",
            "minor": {"ticks": "inside", "ticklen": 3, "showgrid": False} if wide else {}}


def _d3(info: MetricInfo) -> str:
    """A d3 format for a metric in a hover template."""
    if info.format == "bytes":
        return ".3~s"
    if format_problem(info.format):  # never let a format carry text into the template
        return ".4g"
    return info.format.lstrip(",") if info.format[-1:] in "%fdgs" else ".4g"


def scatter_figure(forest: Forest, enc: Encoding, infos: Mapping[str, MetricInfo],
                   hover: Mapping[str, str], x: str | None, y: str | None, selected: set[str],
                   excluded: set[str], front: Sequence[str]) -> go.Figure:
    """Models at (``x``, ``y``); ``front`` is the Pareto front's run ids."""
    fig = go.Figure(layout={"template": app_template()}, _validate=False)
    if not x or not y:
        fig.update_layout(annotations=[{"text": "no metrics logged yet", "showarrow": False}])
        return fig
    ids = [r for r, n in forest.nodes.items() if x in n.metrics and y in n.metrics]
    xs = {r: forest.nodes[r].metrics[x] for r in ids}
    ys = {r: forest.nodes[r].metrics[y] for r in ids}
    fr = sorted((r for r in front if r in xs), key=lambda r: xs[r])
    inc = [r for r in ids if r not in excluded]
    exc = [r for r in ids if r in excluded]
    xi, yi = info_for(infos, x), info_for(infos, y)
    xaxis, yaxis = axis_for(x, xi, list(xs.values())), axis_for(y, yi, list(ys.values()))
    full = len(ids) <= FULL_HOVER_MAX
    dense = is_dense(len(inc))
    if dense:  # one heatmap instead of thousands of markers (figures/density.py)
        fig.add_trace(density_trace(forest, enc, inc, np.fromiter((xs[r] for r in inc), float, len(inc)),
                                    np.fromiter((ys[r] for r in inc), float, len(inc)),
                                    axis_is_log(xaxis), axis_is_log(yaxis)))
    for group, opacity, name in ((inc, 0.95, "models"), (exc, 0.15, "filtered out")):
        if not group or dense:
            continue
        nodes = [forest.nodes[r] for r in group]
        if full:
            texts = [hover.get(r, "") for r in group]
            template = "%{hovertext}<extra></extra>"
        else:
            texts = [f"<b>{escape(n.name)}</b><br>{escape(n.label())}" for n in nodes]
            template = (f"%{{hovertext}}<br>{escape(x)}: %{{x:{_d3(xi)}}}<br>"
                        f"{escape(y)}: %{{y:{_d3(yi)}}}<extra></extra>")
        fig.add_trace(go.Scatter(_validate=False, 
            x=np.fromiter((xs[r] for r in group), float, len(group)),
            y=np.fromiter((ys[r] for r in group), float, len(group)), mode="markers",
            marker={"color": colors_for(enc.color_t(n) for n in nodes),
                    "size": np.fromiter((enc.node_px(n) for n in nodes), np.float32, len(group)).round(1),
                    "opacity": opacity, "line": {"color": "#ffffff", "width": 1 if full else 0}},
            customdata=group, hovertext=texts, hovertemplate=template,
            showlegend=False, name=name))
    # Always drawn, empty or not: the browser restyles this trace when the selection changes
    # (assets/overview.js), so a selection never redraws the figure.
    sel = [r for r in ids if r in selected]
    fig.add_trace(go.Scatter(_validate=False, 
        x=[xs[r] for r in sel], y=[ys[r] for r in sel], mode="markers",
        marker={"symbol": "circle-open", "color": SELECT_COLOR, "line": {"width": 2.5},
                "size": [enc.node_px(forest.nodes[r]) + 7 for r in sel]},
        customdata=sel, hoverinfo="skip", showlegend=False, name="selected"))
    if fr:
        fig.add_trace(front_trace(forest, fr, xs, ys, info_for(infos, x), info_for(infos, y)))
    fig.update_layout(
        height=380, margin={"l": 60, "r": 10, "t": 24, "b": 50}, plot_bgcolor="#ffffff",
        dragmode="select", clickmode="event", hovermode="closest", uirevision=f"{x}|{y}",
        xaxis=xaxis, yaxis=yaxis,
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        newselection={"line": {"color": SELECT_COLOR}})
    legend_to_key(fig)  # "Pareto front" is drawn above the graph (views/scatter.py)
    return fig


def short_label(name: str, limit: int = LABEL_CHARS) -> str:
    """A model name as a plain-text label: cut to ``limit`` characters, then escaped."""
    return escape(name if len(name) <= limit else name[: limit - 1] + "…")


def front_trace(forest: Forest, front: Sequence[str], xs: Mapping[str, float], ys: Mapping[str, float],
                xi: MetricInfo, yi: MetricInfo) -> go.Scatter:
    """The Pareto front drawn over the markers: a step line through its models, each labelled.

    Labels sit on the side away from the dominated models (up-left when lower x and higher y are
    better). Not hoverable (and no ``customdata``), so clicks and boxes still pick the models below.
    Models at the same point (ties) are drawn once, labelled by the first.
    """
    front = list({(xs[r], ys[r]): r for r in reversed(front)}.values())[::-1]
    labelled = len(front) <= FRONT_LABELS_MAX
    up, down = ("top", "bottom") if yi.higher_is_better else ("bottom", "top")
    away = "left" if not xi.higher_is_better else "right"  # away from the dominated models
    # A label near the left edge leans right, near the right edge left (inside the plot), the
    # others away from the cloud; every other label goes below its point, so neighbours on a
    # flat front do not run together.
    rel = _relative([xs[r] for r in front], [*xs.values()])
    positions = [f"{up if i % 2 == 0 else down} "
                 f"{'right' if rel[i] < 0.3 else 'left' if rel[i] > 0.7 else away}" for i in range(len(front))]
    text = [short_label(forest.nodes[r].name) for r in front] if labelled else None
    if not labelled:  # label the two ends only
        text = [short_label(forest.nodes[r].name) if i in (0, len(front) - 1) else ""
                for i, r in enumerate(front)]
    return go.Scatter(_validate=False, 
        x=[xs[r] for r in front], y=[ys[r] for r in front], mode="lines+markers+text",
        line={"color": FRONT_COLOR, "width": 2, "shape": "vh" if xi.higher_is_better else "hv"},
        marker={"symbol": "diamond", "size": 5, "color": FRONT_COLOR},
        text=text, textposition=positions, textfont={"size": 10, "color": "#7a1414"},
        cliponaxis=False, hoverinfo="skip", name="Pareto front", showlegend=True)


def _relative(values: Sequence[float], every: Sequence[float]) -> list[float]:
    """Positions of ``values`` in [0, 1] along the range of ``every`` (log scale when all positive)."""
    pos = all(v > 0 for v in every)
    f = (lambda v: float(np.log10(v))) if pos else float
    lo, hi = f(min(every)), f(max(every))
    return [0.5 if hi <= lo else (f(v) - lo) / (hi - lo) for v in values]
