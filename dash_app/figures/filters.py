"""A brushable histogram of one metric, for budgets (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from dash_app.figures.encoding import app_template, escape
from mlflow_cc.metric_info import MetricInfo

IN_COLOR = "#3f6aa1"
OUT_COLOR = "#d5dbe3"


def histogram_figure(values: Sequence[float], info: MetricInfo,
                     budget: tuple[float, float] | None, bins: int = 24) -> go.Figure:
    """Counts of ``values`` in ``bins`` bins; bars inside ``budget`` (lo, hi) are dark."""
    vals = np.asarray(values, dtype=float)
    vals = vals[~np.isnan(vals)]
    fig = go.Figure(layout={"template": app_template()})
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        if hi <= lo:
            lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
        counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
        centers = (edges[:-1] + edges[1:]) / 2
        if budget is None:
            colors = [IN_COLOR] * len(counts)
        else:
            colors = [IN_COLOR if budget[0] <= c <= budget[1] else OUT_COLOR for c in centers]
        fig.add_trace(go.Bar(x=centers, y=counts, width=(edges[1] - edges[0]) * 0.92,
                             marker={"color": colors}, hovertemplate="%{y} models<extra></extra>",
                             showlegend=False))
        fig.update_xaxes(range=[edges[0], edges[-1]])
    tickformat = "~s" if info.format == "bytes" else info.format.lstrip(",").replace("d", "")
    fig.update_layout(
        height=120, margin={"l": 8, "r": 8, "t": 4, "b": 28}, dragmode="select", selectdirection="h",
        plot_bgcolor="#ffffff", bargap=0, uirevision=info.name, showlegend=False,
        xaxis={"tickformat": tickformat, "fixedrange": True, "nticks": 6,
               "title": {"text": None}},
        yaxis={"visible": False, "fixedrange": True},
        hoverlabel={"namelength": 0})
    if budget is not None:
        fig.add_vrect(x0=budget[0], x1=budget[1], fillcolor="rgba(242,107,29,0.10)",
                      line={"color": "#f26b1d", "width": 1})
    fig.update_layout(meta={"metric": escape(info.name)})
    return fig
