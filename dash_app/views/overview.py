"""Compression Overview: page layout, the shared view state, URL sync, live refresh, status.

The state (``ov-state``) is the one source of truth; it is read from the URL once per
page load and written back to the URL on every change. The sub-views (map,
scatterplot, filters, details) render from it and write user actions into it.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from dash import (
    ClientsideFunction,
    Dash,
    Input,
    Output,
    State,
    ctx,
    dcc,
    html,
    no_update,
)
from dash.exceptions import PreventUpdate
from flask import has_request_context, request
from mlflow.exceptions import MlflowException

from dash_app import state as st
from dash_app.figures.encoding import default_metrics
from dash_app.select import Select
from dash_app.source import DataSource
from dash_app.views import details, filters, model_map, scatter, whatif
from dash_app.views.prologue import require_ready
from mlflow_cc.errors import MlflowCCError
from mlflow_cc.read.lineage import Forest

TITLE = "Compression Overview"
#: The refresh interval is at least this many times what the last refresh took.
REFRESH_BACKOFF = 4


def page_query() -> str | None:
    """The page's own query string when the layout is requested by that page (its Referer).

    Lets the first response carry the map for the URL's state instead of waiting for a
    chain of callbacks; ``None`` outside a request or without a Referer.
    """
    if not has_request_context() or not request.referrer:
        return None
    return "?" + urlsplit(request.referrer).query


def initial_state(source: DataSource, search: str | None) -> dict[str, Any]:
    """The view state a URL asks for, completed with defaults (an unknown experiment: the default)."""
    state = st.empty_state()
    state.update(st.parse_query(search or ""))
    state["ready"] = True
    try:
        reader = source.reader(state.get("experiment"))
    except MlflowCCError:
        reader = source.reader(None)
    state["experiment"] = reader.experiment_id
    state["from_url"] = (search or "").lstrip("?")
    return with_defaults(source, state)


def with_defaults(source: DataSource, state: dict[str, Any]) -> dict[str, Any]:
    """Fill colour, size and axes the experiment does not have with its defaults."""
    forest = source.forest(state["experiment"])
    names = forest.metric_names()
    defaults = default_metrics(forest, source.metric_info(state["experiment"]))
    for key in ("color", "size", "x", "y"):
        if state.get(key) not in names:
            state[key] = defaults[key]
    return state


def version_of(experiment: str, forest: Forest) -> str:
    """A string that changes when models, statuses or metrics change."""
    running = sum(1 for n in forest.nodes.values() if n.is_running)
    metrics = sum(len(n.metrics) for n in forest.nodes.values())
    return f"{experiment}:{len(forest)}:{running}:{metrics}"


def layout(source: DataSource) -> html.Div:
    """The page: controls and status on top, map on the left, scatter/filters/details on the right."""
    try:
        exps = source.experiments()
    except (MlflowException, OSError) as exc:  # a store we cannot list is reported, not fatal
        exps = []
        status = f"cannot list experiments: {exc}"
    else:
        status = ""
    options = [{"label": e["name"], "value": e["id"]} for e in exps]
    state, view, version, first_map = st.empty_state(), None, None, None
    pickers, first_scatter = None, None
    search = page_query()
    if search is not None:
        # Drawn from the page's own URL: the map, the pickers, the status and Selection Details
        # are in the layout, and their callbacks do not run on load (they wait for a change).
        try:
            state = initial_state(source, search)
            view = st.overview_part(state)
            version = version_of(state["experiment"], source.forest(state["experiment"]))
            first_map = model_map.draw(source, view)
            pickers = whatif.picker_values(source, state)
            first_scatter = scatter.first_figure(source, view, version)
            status = status or status_content(source, view)
        except (MlflowCCError, MlflowException, LookupError):
            state, view, version, first_map, pickers, first_scatter = st.empty_state(), None, None, None, None, None
            status = status if isinstance(status, str) else ""  # the callbacks try again and report
    metric_opts = ([{"label": n, "value": n} for n in source.forest(state["experiment"]).metric_names()]
                   if state.get("ready") else [])
    return html.Div(className="cc-overview", children=[
        dcc.Location(id="ov-url-in", refresh=False),
        dcc.Location(id="ov-url-out", refresh=False),
        dcc.Store(id="ov-url-first"),
        dcc.Store(id="ov-state", data=state),
        dcc.Store(id="ov-view", data=view),
        dcc.Store(id="ov-version", data=version),
        dcc.Store(id="ov-pick"),
        dcc.Interval(id="ov-interval", interval=3000),
        html.Div(className="cc-controls", children=[
            html.Label(["Experiment", dcc.Dropdown(id="ov-experiment", options=options, clearable=False,
                                                   value=state.get("experiment") or source.default_experiment,
                                                   className="cc-dd cc-dd-wide")]),
            html.Label(["Colour", Select(id="ov-color", clearable=False, className="cc-dd",
                                         options=metric_opts, value=state.get("color"))]),
            html.Label(["Size", Select(id="ov-size", clearable=False, className="cc-dd",
                                       options=metric_opts, value=state.get("size"))]),
            html.Label(["Layout", dcc.RadioItems(
                id="ov-layout", value=state.get("layout") or "operation", inline=True, className="cc-radio",
                options=[{"label": "by operation", "value": "operation"},
                         {"label": "by step", "value": "step"},
                         # x = time (analysis/time_layout.py)
                         {"label": "by start time", "value": "time"},
                         {"label": "by end time", "value": "time_end"}])]),
        ]),
        html.Div(id="ov-status", className="cc-status", children=status or "reading the experiment…"),
        html.Div(className="cc-main", children=[
            html.Div(className="cc-left", children=[model_map.layout(first_map, view, version)]),
            html.Div(className="cc-right", children=[scatter.layout(metric_opts, state, first_scatter),
                                                     filters.layout(metric_opts, view),
                                                     whatif.layout(pickers),  # the What-if panel
                                                     details.layout(source, view)]),
        ]),
    ])


def status_content(source: DataSource, state: dict[str, Any]) -> Any:
    """The status line for a ready view ``state``: experiment, models, running, failed, warnings."""
    require_ready(state)
    reader = source.reader(state["experiment"])
    forest = reader.forest()
    n = len(forest)
    running = sum(1 for m in forest.nodes.values() if m.is_running)
    failed = sum(1 for m in forest.nodes.values() if m.is_failed)
    parts = [f"{reader.experiment_name}: {n} model{'s' if n != 1 else ''}"]
    if running:
        parts.append(f"{running} running")
    if failed:
        parts.append(f"{failed} failed")
    warnings = forest.warnings
    parts.append(f"{len(warnings)} lineage warning{'s' if len(warnings) != 1 else ''}"
                 if warnings else "no lineage warnings")
    children: list[Any] = [html.Span(" · ".join(parts), className="cc-status-text")]
    if warnings:
        children.append(html.Details(className="cc-warnings", open=len(warnings) <= 3, children=[
            html.Summary("warnings"),
            html.Ul([html.Li(f"[{w.kind}] {w.message}", className=f"cc-warn-{w.kind}")
                     for w in warnings[:200]]
                    + ([html.Li(f"... and {len(warnings) - 200} more")] if len(warnings) > 200 else []))]))
    return children


def register(app: Dash, source: DataSource, refresh_ms: int = 3000) -> None:
    """Callbacks of the page and of every sub-view."""

    @app.callback(
        Output("ov-state", "data"), Output("ov-experiment", "value"), Output("ov-color", "value"),
        Output("ov-size", "value"), Output("ov-layout", "value"),
        Output("ov-color", "options"), Output("ov-size", "options"),
        Input("ov-url-first", "data"), Input("ov-experiment", "value"), Input("ov-color", "value"),
        Input("ov-size", "value"), Input("ov-layout", "value"),
        State("ov-state", "data"), prevent_initial_call=True)
    def on_controls(search: str | None, exp: str | None, color: str | None, size: str | None,
                    lay: str | None, state: dict[str, Any]) -> tuple[Any, ...]:
        """Read the URL once per page load; afterwards the controls change the state.

        The page's first map is drawn from its Referer's query; ``ov-url-first`` (the browser's
        ``cc.urlFirst``) hands the URL over only when that differs or is missing.
        """
        state = dict(state or st.empty_state())
        trig = ctx.triggered_id
        if trig == "ov-url-first" or not state.get("ready"):
            if search is None:
                raise PreventUpdate  # the Location has not reported the URL yet
            state = initial_state(source, search)
        elif trig == "ov-experiment":
            if exp == state.get("experiment"):
                raise PreventUpdate
            state = dict(st.empty_state(), ready=True, experiment=exp)
            state = with_defaults(source, state)
        else:
            state.update(color=color, size=size, layout=lay or "operation")
            state = with_defaults(source, state)
        names = source.forest(state["experiment"]).metric_names()
        opts = [{"label": n, "value": n} for n in names]
        return (state, state["experiment"], state["color"], state["size"], state["layout"], opts, opts)

    app.clientside_callback(ClientsideFunction(namespace="cc", function_name="urlFirst"),
                            Output("ov-url-first", "data"), Input("ov-url-in", "search"), State("ov-state", "data"))

    @app.callback(Output("ov-view", "data"), Input("ov-state", "data"), State("ov-view", "data"),
                  prevent_initial_call=True)
    def view_state(state: dict[str, Any] | None, current: dict[str, Any] | None) -> dict[str, Any]:
        """The overview's part of the state: its figures redraw only when this part changes.

        Not on page load: the layout carries it, and the views that read it (status, filters,
        details) draw at once instead of waiting for a request that would change nothing.
        """
        require_ready(state)
        view = st.overview_part(state)
        if view == current:
            raise PreventUpdate
        return view

    @app.callback(Output("ov-url-out", "search"), Input("ov-state", "data"), prevent_initial_call=True)
    def to_url(state: dict[str, Any]) -> str:
        require_ready(state)
        return st.to_query(state)

    @app.callback(Output("ov-version", "data"), Output("ov-interval", "interval"),
                  Input("ov-interval", "n_intervals"), State("ov-state", "data"),
                  State("ov-version", "data"))
    def refresh(_n: int | None, state: dict[str, Any], version: str | None) -> tuple[Any, int]:
        """Incremental refresh; a new version string makes the views re-render."""
        if not state or not state.get("ready"):
            return no_update, refresh_ms
        started = time.monotonic()
        forest = source.refresh(state["experiment"]) if _n else source.forest(state["experiment"])
        new = version_of(state["experiment"], forest)
        # A refresh that takes long (a big experiment, a slow store) is asked for less often:
        # the page never has one refresh after another in flight.
        interval = max(refresh_ms, int((time.monotonic() - started) * 1000 * REFRESH_BACKOFF))
        return (no_update if version == new else new), interval

    @app.callback(Output("ov-status", "children"), Input("ov-version", "data"),
                  Input("ov-view", "data"), prevent_initial_call=True)
    def status(_version: str | None, state: dict[str, Any]) -> Any:
        return status_content(source, state)

    # Clicks and boxes in both plots (the selection, applied in the browser): model_map.register.
    model_map.register(app, source)
    scatter.register(app, source)
    filters.register(app, source)
    details.register(app, source)
    whatif.register(app, source)
