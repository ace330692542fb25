"""The What-if figure: the best quality reachable as a budget relaxes, as a staircase (pure).

Each step's marker carries its model's run id (``customdata``): a click selects it
(``assets/whatif.js``). Steps within the current budget are dark, steps that need a looser
budget light; the current budget is a dashed line. The x axis always reads from the tightest
budget (left) to the loosest (right): reversed when higher values of the budget metric are better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from dash_app.figures.encoding import SELECT_COLOR, app_template, escape
from dash_app.figures.legend_key import legend_to_key
from mlflow_cc.analysis.whatif import Staircase
from mlflow_cc.metric_info import MetricInfo

WITHIN_COLOR = "#3f6aa1"
BEYOND_COLOR = "#9db3cf"
OTHER_COLOR = "#d5dbe3"
#: Steps are numbered on the figure (the table's "#") up to this many steps.
LABEL_MAX = 30


def axis_format(info: MetricInfo) -> dict[str, Any]:
    """Plotly tick settings for a metric's display format."""
    if info.format == "bytes":
        return {"tickformat": "~s", "ticksuffix": "B"}
    return {"tickformat": info.format.lstrip(",").replace("d", ",d") if info.format.endswith("d")
            else info.format}


def budget_words(info: MetricInfo) -> str:
    return "at most" if not info.higher_is_better else "at least"


def whatif_figure(sc: Staircase, e_info: MetricInfo, q_info: MetricInfo, labels: Mapping[str, str],
                  others: Sequence[tuple[float, float]], extent: tuple[float, float] | None) -> go.Figure:
    """The staircase of ``sc``; ``others`` are the other models' (budget, quality) points, grey;
    ``extent`` the budget metric's range over them (the last step runs on to its loose end)."""
    fig = go.Figure(layout={"template": app_template()})
    if others:
        fig.add_trace(go.Scatter(x=[p[0] for p in others], y=[p[1] for p in others], mode="markers",
                                 marker={"color": OTHER_COLOR, "size": 6}, hoverinfo="skip",
                                 name="other models (within the other budgets)"))
    steps = sc.steps
    if steps:
        xs = [s.budget for s in steps]
        ys = [s.quality for s in steps]
        if extent is not None:
            loose = extent[1] if sc.relaxes_up else extent[0]
            if loose != xs[-1]:
                xs, ys = [*xs, loose], [*ys, ys[-1]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": WITHIN_COLOR,
                                                                   "width": 2},
                                 hoverinfo="skip", name=escape(f"best {sc.quality} within the budget")))
        for within, color, name in ((True, WITHIN_COLOR, "within the current budget"),
                                    (False, BEYOND_COLOR, "needs a looser budget")):
            group = [(i, s) for i, s in enumerate(steps) if sc.within(s.budget) == within]
            if not group:
                continue
            text = [str(i + 1) if len(steps) <= LABEL_MAX else "" for i, _ in group]
            hover = [escape(f"step {i + 1}: {labels.get(s.run_id, s.run_id)}") + "<br>"
                     + escape(f"{e_info.name} {budget_words(e_info)} {e_info.format_value(s.budget)}: "
                              f"best {q_info.name} {q_info.format_value(s.quality)}"
                              + (f" (and {len(s.tied)} tied)" if s.tied else "")) + "<br>click to select"
                     for i, s in group]
            fig.add_trace(go.Scatter(
                x=[s.budget for _, s in group], y=[s.quality for _, s in group], mode="markers+text",
                marker={"color": color, "size": 12, "line": {"color": "#ffffff", "width": 1}},
                text=text, textposition="top left", textfont={"size": 11, "color": "#2b3440"},
                customdata=[s.run_id for _, s in group], hovertext=hover, hoverinfo="text", name=name))
    if sc.current is not None:
        fig.add_vline(x=sc.current, line={"color": SELECT_COLOR, "width": 1.5, "dash": "dash"},
                      annotation={"text": escape(f"current budget: {budget_words(e_info)} "
                                                 f"{e_info.format_value(sc.current)}"),
                                  "font": {"size": 11, "color": SELECT_COLOR}},
                      annotation_position="top right")
    better = "higher" if q_info.higher_is_better else "lower"
    ys_all = [s.quality for s in steps] + [p[1] for p in others]
    pad = (max(ys_all) - min(ys_all)) * 0.12 or 0.05 * (abs(max(ys_all)) or 1.0) if ys_all else 0.0
    fig.update_layout(
        height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, plot_bgcolor="#ffffff",
        hovermode="closest", clickmode="event", dragmode=False, uirevision="whatif",
        legend={"orientation": "h", "x": 0, "y": -0.28, "yanchor": "top", "font": {"size": 11}},
        xaxis={"title": {"text": escape(f"budget: {e_info.name} {budget_words(e_info)} … "
                                        f"(looser to the right)")},
               "autorange": "reversed" if not sc.relaxes_up else True, "gridcolor": "#eef1f5",
               "automargin": True, **axis_format(e_info)},
        yaxis={"title": {"text": escape(f"best {q_info.name} ({better} is better)")},
               **({"range": [min(ys_all) - pad, max(ys_all) + pad]} if ys_all else {}),
               "gridcolor": "#eef1f5", "automargin": True, **axis_format(q_info)})
    if not steps:
        fig.add_annotation(text="no model has both metrics within the other budgets", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5, font={"color": "#66727f"})
    legend_to_key(fig)  # drawn below the graph by the page (views/whatif.py)
    return fig
