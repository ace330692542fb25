"""Layers tab: the module hierarchy as a tree table, one column per model, cells vs the base.

The tree is expanded and collapsed on the server: the grid receives only the visible rows
(``rowData``) and a click on a module's name toggles it. Comparisons of large models take
seconds: they run in a background thread (see :meth:`dash_app.comparison.Comparisons.layers_in_background`)
while an interval shows progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash_ag_grid as dag
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dash_app.comparison import LayerSet
from dash_app.figures import layers as fig
from dash_app.source import DataSource
from dash_app.state_patch import patch_changes
from dash_app.views.prologue import COMPARISON_TAB, require_ready

GRID = "cmp-lay-grid"


def layout() -> html.Div:
    """Controls, legend, progress and the tree grid."""
    return html.Div(className="cmp-lay", children=[
        dcc.Store(id="cmp-lay-init"),
        dcc.Store(id="cmp-lay-open", data=[]),
        dcc.Interval(id="cmp-lay-poll", interval=700, disabled=True),
        html.Div(className="cmp-controls", children=[
            html.Label(["Show", dcc.RadioItems(id="cmp-lay-show", value="weights", inline=True, className="cc-radio",
                                               options=[{"label": t, "value": v} for v, t in fig.SHOW_OPTIONS])]),
            html.Label(["Rows", dcc.RadioItems(id="cmp-lay-view", value="tree", inline=True, className="cc-radio",
                                               options=[{"label": "module tree", "value": "tree"},
                                                        {"label": "list of modules", "value": "list"}])]),
            html.Label(["Sort", dcc.Dropdown(id="cmp-lay-sort", clearable=False, value="", className="cc-dd",
                                             style={"minWidth": "260px"})]),
            html.Label(["Filter modules", dcc.Input(id="cmp-lay-pattern", type="text", debounce=True,
                                                    placeholder="name or *pattern*", style={"width": "190px"})],
                       title="a module name or an fnmatch pattern, e.g. *LayerNorm*"),
            html.Div([html.Button("expand all", id="cmp-lay-expand", className="cc-btn", n_clicks=0),
                      html.Button("collapse all", id="cmp-lay-collapse", className="cc-btn", n_clicks=0)]),
        ]),
        html.Div(id="cmp-lay-legend", className="cmp-legend"),
        html.Div(id="cmp-lay-status", className="cmp-status"),
        dag.AgGrid(id=GRID, className="ag-theme-alpine cmp-grid", rowData=[], columnDefs=[],
                   defaultColDef={"resizable": True, "suppressHeaderMenuButton": True, "suppressMovable": True},
                   # No getRowId: a module keeps its id while its cells change (base, sort, expanded),
                   # and AG Grid would keep the old drawing; new rows are drawn afresh.
                   dashGridOptions={"headerHeight": 44, "rowHeight": 34, "animateRows": False,
                                    "suppressCellFocus": True},
                   style={"height": "560px", "width": "100%"}),
    ])


def sampled_note(data: LayerSet) -> str:
    """" · N large tensors sampled: …" when some tensors were compared on a fixed sample of their values."""
    table = data.comparison.tensors if data.comparison is not None else None
    if table is None or "sampled" not in table.columns or not table["sampled"].any():
        return ""
    count = table.loc[table["sampled"].astype(bool), "name"].nunique()
    return (f" · {count} large tensor{'s' if count != 1 else ''} sampled: compared on the same fixed "
            "positions in every model, counts scaled to the full tensor")


def sort_options(models: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Module order, the largest change of any model, or the change of one model."""
    return [{"label": "module order", "value": ""}, {"label": "most changed (any model)", "value": "any"}] + [
        {"label": f"most changed in {m['name']}", "value": m["run_id"]} for m in models[1:]]


def register(app: Dash, source: DataSource,
             context: Callable[[DataSource, dict[str, Any]], dict[str, Any]]) -> None:
    """Callbacks of the Layers tab; ``context(source, state)`` says what is compared."""

    @app.callback(Output("cmp-lay-show", "value"), Output("cmp-lay-view", "value"), Output("cmp-lay-sort", "value"),
                  Output("cmp-lay-pattern", "value"), Output("cmp-lay-open", "data"), Output("cmp-lay-init", "data"),
                  Output("cmp-lay-sort", "options", allow_duplicate=True),
                  Input("ov-state", "data"), Input("app-tabs", "value"), State("cmp-lay-init", "data"),
                  prevent_initial_call=True)
    def init(state: dict[str, Any] | None, app_tab: str | None, done: bool | None) -> tuple[Any, ...]:
        """Controls from the URL, once per page load, when the comparison first shows (the sort
        options with them, so the value sticks)."""
        require_ready(state, not done, app_tab == COMPARISON_TAB)
        show = state.get("lshow") if state.get("lshow") in ("sparsity", "weights", "activations") else "weights"
        view = "list" if state.get("lview") == "list" else "tree"
        options = sort_options(context(source, state)["models"])
        sort = state.get("lsort") if state.get("lsort") in [o["value"] for o in options] else ""
        return (show, view, sort, state.get("lpat") or "", list(state.get("open") or []), True, options)

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Input("cmp-lay-show", "value"), Input("cmp-lay-view", "value"), Input("cmp-lay-sort", "value"),
                  Input("cmp-lay-pattern", "value"), Input("cmp-lay-open", "data"),
                  State("ov-state", "data"), State("cmp-lay-init", "data"), prevent_initial_call=True)
    def write(show: str, view: str, sort: str | None, pattern: str | None, opened: list[str] | None,
              state: dict[str, Any] | None, done: bool | None) -> dict[str, Any]:
        require_ready(state, done)
        new = dict(state, lshow=show, lview=view, lsort=sort or None, lpat=pattern or None,
                   open=list(opened or []))
        if new == state:
            raise PreventUpdate
        return patch_changes(state, new)

    @app.callback(Output(GRID, "rowData"), Output(GRID, "columnDefs"), Output("cmp-lay-legend", "children"),
                  Output("cmp-lay-status", "children"), Output("cmp-lay-poll", "disabled"),
                  Output("cmp-lay-sort", "options"),
                  Input("cmp-ctx", "data"), Input("cmp-lay-show", "value"), Input("cmp-lay-view", "value"),
                  Input("cmp-lay-sort", "value"), Input("cmp-lay-pattern", "value"), Input("cmp-lay-open", "data"),
                  Input("cmp-lay-poll", "n_intervals"), State(GRID, "columnDefs"), prevent_initial_call=True)
    def rows(cmp: dict[str, Any] | None, show: str, view: str, sort: str | None, pattern: str | None,
             opened: list[str] | None, _tick: Any, current_cols: Any) -> tuple[Any, ...]:
        """The visible rows of the tree (or the module list) with one cell per model."""
        if not cmp:
            raise PreventUpdate
        if cmp.get("message"):
            return [], [], [], cmp["message"], True, []
        models = cmp["models"]
        run_ids = [m["run_id"] for m in models]
        options = sort_options(models)
        kind = "activations" if show == "activations" else "weights"
        comparisons = source.comparisons(cmp["experiment"])
        data: LayerSet | None = comparisons.layers_in_background(cmp["base"], run_ids, kind)
        if data is None:
            done = comparisons.progress(cmp["base"], run_ids, kind)
            text = (f"comparing {kind} with the base: {done[0]} of {done[1]} tensors…" if done and done[1]
                    else f"comparing {kind} with the base…")
            return no_update, no_update, no_update, html.Span(text, className="cmp-progress"), False, options
        legend = [html.Span(className="cmp-legend-item", children=[
            html.Span(className="cmp-swatch", style={"background": color}), text]) if color
            else html.Span(text, className="cmp-muted") for color, text in fig.legend(show)]
        if data.problem:
            return [], [], legend, html.Span(data.problem, className="cmp-problem"), True, options
        sort_model = sort if sort in ("any", *run_ids) else None
        visible = data.rows(expanded=opened or [], pattern=pattern or "", flat=view == "list", sort_model=sort_model)
        payload = fig.rows_payload(visible, run_ids, show)
        columns = fig.column_defs(models, show=show, unavailable=data.unavailable)
        notes = [f"{m['name']}: {kind} {data.unavailable[m['run_id']]}" for m in models
                 if m["run_id"] in data.unavailable]
        status = f"{len(visible)} rows" + (f" · {'; '.join(notes)}" if notes else "") + sampled_note(data)
        if pattern:
            status += f" matching “{pattern}”"
        return (payload, columns if columns != current_cols else no_update, legend, status, True, options)

    @app.callback(Output("cmp-lay-open", "data", allow_duplicate=True),
                  Input(GRID, "cellClicked"), Input("cmp-lay-expand", "n_clicks"), Input("cmp-lay-collapse", "n_clicks"),
                  State("cmp-lay-open", "data"), State("cmp-ctx", "data"), State("cmp-lay-show", "value"),
                  prevent_initial_call=True)
    def toggle(click: dict[str, Any] | None, _e: int, _c: int, opened: list[str] | None,
               cmp: dict[str, Any] | None, show: str) -> list[str]:
        """A click on a module's name expands or collapses it; the buttons open or close everything."""
        trig = ctx.triggered_id
        opened = list(opened or [])
        if trig == "cmp-lay-collapse":
            return []
        if trig == "cmp-lay-expand":
            if not cmp or not cmp.get("models"):
                raise PreventUpdate
            kind = "activations" if show == "activations" else "weights"
            data = source.comparisons(cmp["experiment"]).layers_in_background(
                cmp["base"], [m["run_id"] for m in cmp["models"]], kind)
            if data is None:
                raise PreventUpdate
            return data.all_parents()
        if not click or click.get("colId") != "label" or not click.get("value"):
            raise PreventUpdate
        node = str(click["value"])  # the name column's value is the module's id
        return [n for n in opened if n != node] if node in opened else [*opened, node]
