"""Filters view: one brushable histogram per chosen metric (budgets), clear all."""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dash_app import state as st
from dash_app.figures.filters import histogram_figure
from dash_app.select import Select
from dash_app.source import DataSource
from dash_app.views.prologue import require_ready, view_data
from mlflow_cc.metric_info import info_for
from mlflow_cc.read.lineage import Forest

HIST_CONFIG = {"displayModeBar": False}
BINS = 24


def layout(options: list[dict[str, str]] | None = None, view: dict[str, Any] | None = None) -> html.Div:
    """The card, with the metric choices and the URL's budget panels already in it."""
    return html.Div(className="cc-card", children=[
        html.Div(className="cc-card-head", children=[
            html.H3("Filters"),
            html.Span("drag across a histogram to set a budget", className="cc-muted"),
        ]),
        html.Div(className="cc-toolbar", children=[
            Select(id="ov-filter-add", placeholder="add a histogram for a metric…",
                   className="cc-dd cc-dd-wide", clearable=True, options=options or []),
            html.Button("Clear all", id="ov-filter-clear"),
        ]),
        html.Div(id="ov-filter-list", className="cc-filter-list",
                 children=[_panel(m) for m in ((view or {}).get("filters") or {})]),
        html.Div(id="ov-filter-summary", className="cc-muted"),
    ])


def _panel(metric: str) -> html.Div:
    return html.Div(className="cc-filter", children=[
        html.Div(className="cc-filter-head", children=[
            html.Span(metric, className="cc-filter-name"),
            html.Span(id={"type": "ov-filter-range", "metric": metric}, className="cc-muted"),
            html.Button("×", id={"type": "ov-filter-remove", "metric": metric}, title="remove",
                        className="cc-x"),
        ]),
        dcc.Graph(id={"type": "ov-filter-hist", "metric": metric}, config=HIST_CONFIG),
    ])


def snap_budget(rng: list[float], forest: Forest, metric: str) -> list[float]:
    """A brushed range, snapped to the data's extremes when it reaches within half a bin of them.

    Brushing to the end of a histogram means "no limit on that side": the best model
    must not fall out through pixel rounding.
    """
    lo, hi = float(min(rng)), float(max(rng))
    vals = [n.metrics[metric] for n in forest.nodes.values() if metric in n.metrics]
    if vals:
        vmin, vmax = min(vals), max(vals)
        half_bin = (vmax - vmin) / BINS / 2
        if lo <= vmin + half_bin:
            lo = vmin
        if hi >= vmax - half_bin:
            hi = vmax
    return [lo, hi]


def register(app: Dash, source: DataSource) -> None:

    @app.callback(Output("ov-filter-add", "options"), Input("ov-color", "options"), prevent_initial_call=True)
    def add_options(options: list[dict[str, str]] | None) -> Any:
        return options or []

    @app.callback(Output("ov-filter-list", "children"), Input("ov-view", "data"),
                  State({"type": "ov-filter-hist", "metric": ALL}, "id"), prevent_initial_call=True)
    def panels(state: dict[str, Any], ids: list[dict[str, str]]) -> Any:
        """(Re)build the panels only when the set of filtered metrics changes."""
        require_ready(state)
        wanted = list((state.get("filters") or {}).keys())
        if wanted == [i["metric"] for i in ids or []]:
            return no_update
        return [_panel(m) for m in wanted]

    @app.callback(Output({"type": "ov-filter-hist", "metric": ALL}, "figure"),
                  Output({"type": "ov-filter-range", "metric": ALL}, "children"),
                  Output("ov-filter-summary", "children"),
                  Input({"type": "ov-filter-hist", "metric": ALL}, "id"),
                  Input("ov-view", "data"), Input("ov-version", "data"))
    def figures(ids: list[dict[str, str]], state: dict[str, Any], _v: Any) -> tuple[Any, ...]:
        forest, infos = view_data(source, state)
        flt = state.get("filters") or {}
        figs, ranges = [], []
        for i in ids:
            m = i["metric"]
            info = info_for(infos, m)
            rng = flt.get(m)
            vals = [n.metrics[m] for n in forest.nodes.values() if m in n.metrics]
            figs.append(histogram_figure(vals, info, tuple(rng) if rng else None, bins=BINS))
            ranges.append(f"{info.format_value(rng[0])} – {info.format_value(rng[1])}" if rng
                          else "no budget yet")
        excluded = st.excluded_ids(forest, flt)
        summary = (f"{len(forest) - len(excluded)} of {len(forest)} models within budget"
                   if any(flt.values()) else "")
        return figs, ranges, summary

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Output("ov-filter-add", "value"),
                  Input("ov-filter-add", "value"), Input("ov-filter-clear", "n_clicks"),
                  Input({"type": "ov-filter-hist", "metric": ALL}, "selectedData"),
                  Input({"type": "ov-filter-remove", "metric": ALL}, "n_clicks"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def on_filter(add: str | None, _clear: Any, selections: list[Any], _removes: list[Any],
                  state: dict[str, Any]) -> tuple[Any, Any]:
        """Add a histogram, brush a budget, remove one, or clear all.

        Brushing drops models outside the budget from the selection (they are unselectable).
        """
        require_ready(state)
        trig = ctx.triggered_id
        flt = dict(state.get("filters") or {})
        if trig == "ov-filter-add":
            if not add or add in flt:
                raise PreventUpdate
            flt[add] = None
        elif trig == "ov-filter-clear":
            flt = {}
        elif isinstance(trig, dict) and trig.get("type") == "ov-filter-remove":
            if not ctx.triggered[0].get("value"):
                raise PreventUpdate
            flt.pop(trig["metric"], None)
        elif isinstance(trig, dict) and trig.get("type") == "ov-filter-hist":
            sel = ctx.triggered[0].get("value")
            rng = (sel or {}).get("range", {}).get("x") if isinstance(sel, dict) else None
            if not rng or trig["metric"] not in flt:
                raise PreventUpdate  # figure redraws clear the brush: not a user action
            flt[trig["metric"]] = snap_budget(rng, source.forest(state["experiment"]), trig["metric"])
        else:
            raise PreventUpdate
        forest = source.forest(state["experiment"])
        excluded = st.excluded_ids(forest, flt)
        sel = [r for r in state.get("sel") or [] if r not in excluded]
        return {**state, "filters": flt, "sel": sel}, None
