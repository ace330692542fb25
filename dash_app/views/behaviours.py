"""Behaviours tab: one column per model, rows per class / subgroup / instance, paged on the server.

The grid uses AG Grid's infinite row model: the browser asks for a block of rows with its
sort and filter model (``getRowsRequest``) and receives only that block
(``getRowsResponse``). A new grid (a new pattern-matching id) is made whenever what the
rows mean changes (models, base, rows, metric, absolute/relative, drill), so that its
row cache starts empty. Also here: the most frequent base→model prediction changes, and
flags for review.

The grid's server side is in :mod:`.behaviours_grid`.
"""

from __future__ import annotations

import json
from typing import Any

import dash_ag_grid as dag
from dash import (
    ALL,
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
from mlflow.exceptions import MlflowException

from dash_app.auth import current_session
from dash_app.comparison import BehaviourSet, Drill
from dash_app.figures import behaviours as fig
from dash_app.source import DataSource
from dash_app.state_patch import patch_changes
from dash_app.views import behaviour_flags
from dash_app.views import behaviours_significance as significance
from dash_app.views.behaviours_grid import (
    BLOCK,
    GRID,
    ROW_OPTIONS,
    _changes_children,
    _class_label,
    _drill,
    _grid_height,
    _grid_key,
    _initial_sort_filter,
    _metric_options,
    _rows_response,
)
from dash_app.views.generation_rows import (
    adapt_columns,
    changes_title,
    instance_row_height,
    status_note,
)
from dash_app.views.prologue import COMPARISON_TAB, require_ready
from mlflow_cc.track.flags import MODEL_TARGET, instance_target, target_problem


def layout() -> html.Div:
    """Controls, drill breadcrumb, the grid, and the changes and flags panels."""
    return html.Div(className="cmp-beh", children=[
        dcc.Store(id="cmp-beh-init"),
        dcc.Store(id="cmp-beh-ctx"),
        dcc.Store(id="cmp-beh-drill"),
        dcc.Store(id="cmp-beh-pick"),
        dcc.Store(id="cmp-flag-version"),
        dcc.Interval(id="cmp-flag-interval", interval=3000, disabled=True),  # on while shown: behaviour_flags
        html.Div(className="cmp-controls", children=[
            html.Label(["Rows", dcc.RadioItems(id="cmp-beh-rows", options=ROW_OPTIONS, value="classes",
                                               inline=True, className="cc-radio")]),
            html.Label(["Metric", dcc.Dropdown(id="cmp-beh-metric", clearable=False, value="correct",
                                               className="cc-dd", options=_metric_options())]),
            html.Label(["Values", dcc.RadioItems(id="cmp-beh-rel", inline=True, className="cc-radio", value="abs",
                                                 options=[{"label": "absolute", "value": "abs"},
                                                          {"label": "relative to base", "value": "rel"}])]),
            html.Label(["Instances", dcc.Checklist(id="cmp-beh-flagged", inline=True, className="cc-radio",
                                                   options=[{"label": "flagged only", "value": "on"}],
                                                   value=[])]),
            *significance.controls(),
        ]),
        html.Div(className="cmp-crumb", children=[
            html.Span(id="cmp-beh-crumb", className="cmp-crumb-text"),
            html.Button("✕ back to groups", id="cmp-beh-undrill", className="cc-btn", n_clicks=0,
                        style={"display": "none"}),
            html.Span(id="cmp-beh-status", className="cmp-status"),
            html.Button("export CSV", id="cmp-beh-csv", className="cc-btn", n_clicks=0, style={"marginLeft": "auto"}),
            dcc.Download(id="cmp-beh-download"),
        ]),
        dcc.Loading(html.Div(id="cmp-beh-grid-wrap", className="cmp-grid-wrap"), type="dot", delay_show=400),
        html.Div(className="cmp-body", style={"marginTop": "8px"}, children=[
            html.Div(className="cmp-side", style={"flex": "1 1 60%"}, children=[
                html.H4(changes_title("classification"), id="cmp-beh-changes-title"),
                html.Div(id="cmp-beh-changes", style={"display": "flex", "flexWrap": "wrap", "gap": "4px 18px"})]),
            html.Div(className="cmp-side", style={"flex": "1 1 40%"}, children=[
                html.H4("Flags for review"),
                html.Div(className="cmp-flag-form", children=[
                    dcc.Dropdown(id="cmp-flag-target", clearable=False, className="cc-dd",
                                 style={"minWidth": "260px"}),
                    dcc.Input(id="cmp-flag-note", type="text", placeholder="short note for reviewers",
                              maxLength=500, debounce=False),
                    html.Button("Flag", id="cmp-flag-add", className="cc-btn", n_clicks=0),
                ]),
                dcc.Input(id="cmp-flag-filter", type="text", placeholder="filter flags (model, note, user)",
                          debounce=True, style={"width": "100%", "margin": "4px 0"}),
                html.Div(id="cmp-flag-msg", className="cmp-muted"),
                html.Ul(id="cmp-flag-list", className="cmp-flags"),
            ]),
        ]),
    ])




def register(app: Dash, source: DataSource, refresh_ms: int = 3000) -> None:
    """Callbacks of the Behaviours tab."""
    significance.register(app)
    behaviour_flags.register(app, source)

    def bset(cmp: dict[str, Any]) -> BehaviourSet:
        return source.comparisons(cmp["experiment"]).behaviours(cmp["base"], [m["run_id"] for m in cmp["models"]])

    @app.callback(Output("cmp-beh-rows", "value"), Output("cmp-beh-metric", "value"), Output("cmp-beh-rel", "value"),
                  Output("cmp-beh-flagged", "value"), Output("cmp-beh-drill", "data"), Output("cmp-beh-init", "data"),
                  Input("ov-state", "data"), Input("app-tabs", "value"), State("cmp-beh-init", "data"),
                  prevent_initial_call=True)
    def init(state: dict[str, Any] | None, app_tab: str | None, done: bool | None) -> tuple[Any, ...]:
        """Controls from the URL, once per page load, when the comparison first shows."""
        require_ready(state, not done, app_tab == COMPARISON_TAB)
        rows = state.get("rows") if state.get("rows") in ("classes", "subgroups", "instances") else "classes"
        drill = _drill(state.get("drill"))
        return (rows, state.get("metric") or "correct", "rel" if state.get("rel") == "rel" else "abs",
                ["on"] if state.get("flagged") == "on" else [], drill.text() if drill else None, True)

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Input("cmp-beh-rows", "value"), Input("cmp-beh-metric", "value"), Input("cmp-beh-rel", "value"),
                  Input("cmp-beh-flagged", "value"), Input("cmp-beh-drill", "data"),
                  State("ov-state", "data"), State("cmp-beh-init", "data"), prevent_initial_call=True)
    def write(rows: str, metric: str, rel: str, flagged: list[str], drill: str | None,
              state: dict[str, Any] | None, done: bool | None) -> dict[str, Any]:
        require_ready(state, done)
        new = dict(state, rows=rows, metric=metric, rel=rel, flagged="on" if flagged else None, drill=drill)
        if ctx.triggered_id in ("cmp-beh-rows", "cmp-beh-metric", "cmp-beh-rel", "cmp-beh-drill"):
            new.update(bsort=None, bfilter=None)  # what the columns mean changed
        if new == state:
            raise PreventUpdate
        return patch_changes(state, new)

    @app.callback(Output("cmp-beh-changes-title", "children"), Input("cmp-beh-ctx", "data"),
                  prevent_initial_call=True)
    def changes_heading(bctx: dict[str, Any] | None) -> str:
        """Answers change for generation outputs, predictions for the others."""
        return changes_title((bctx or {}).get("kind") or "classification")

    @app.callback(Output("cmp-beh-metric", "value", allow_duplicate=True), Input("cmp-beh-metric", "options"),
                  Input("cmp-beh-init", "data"), State("cmp-beh-metric", "value"), prevent_initial_call=True)
    def metric_in_options(options: list[dict[str, Any]] | None, done: bool | None, value: str | None) -> str:
        """Show the metric the grid uses when the chosen one is not compared (another outputs kind);
        only once the URL's metric is in the control (so it never overrides the URL's)."""
        values = [o["value"] for o in options or []]
        if not done or not values or value in values:
            raise PreventUpdate
        return values[0]

    @app.callback(Output("cmp-beh-grid-wrap", "children"), Output("cmp-beh-ctx", "data"),
                  Output("cmp-beh-metric", "options"), Output("cmp-beh-crumb", "children"),
                  Output("cmp-beh-undrill", "style"), Output("cmp-beh-changes", "children"),
                  Output("cmp-beh-status", "children"),
                  Input("cmp-ctx", "data"), Input("cmp-beh-rows", "value"), Input("cmp-beh-metric", "value"),
                  Input("cmp-beh-rel", "value"), Input("cmp-beh-flagged", "value"), Input("cmp-beh-drill", "data"),
                  Input("cmp-beh-sig", "value"), Input("cmp-beh-alpha", "value"),
                  State("cmp-beh-ctx", "data"), State("ov-state", "data"), prevent_initial_call=True)
    def build_grid(cmp: dict[str, Any] | None, rows: str, metric: str, rel: str, flagged: list[str],
                   drill_text: str | None, sig_on: list[str] | None, alpha: str | None, current: dict[str, Any] | None,
                   state: dict[str, Any] | None) -> tuple[Any, ...]:
        """A fresh grid for what the rows now mean; the header summaries and the changes panel."""
        if not cmp:
            raise PreventUpdate
        hidden = {"display": "none"}
        if cmp.get("message"):
            return html.Div(cmp["message"], className="cmp-muted"), None, [], "", hidden, [], ""
        data = bset(cmp)
        metrics = data.metrics or ["correct"]
        options = [{"label": fig.metric_label(m), "value": m} for m in metrics]
        if metric not in metrics:
            metric = metrics[0]
        drill = _drill(drill_text) if rows == "instances" else None
        level = significance.sig.parse_level(alpha)
        key = _grid_key(cmp, rows, metric, rel, drill.text() if drill else None, bool(flagged), bool(sig_on), level)
        if current and current.get("key") == key:
            raise PreventUpdate
        relative = rel == "rel"
        if data.problem:
            return (html.Div(data.problem, className="cmp-problem"), None, options, "", hidden, [],
                    "")
        models = cmp["models"]
        table = data.table(rows, metric, relative, drill)
        scale = fig.bar_scale(table, len(models), metric, relative)
        base_scale = fig.bar_scale(table, 1, metric, False) if relative else None
        columns = fig.column_defs(models, mode=rows, metric=metric, relative=relative,
                                  summaries=data.summaries(metric, relative),
                                  higher_is_better=data.higher_is_better(metric), scale=scale, base_scale=base_scale,
                                  preview_kind=data.preview_kind() if rows == "instances" else None)
        if rows == "instances" and data.kind != "classification":
            columns = adapt_columns(columns, data.kind)  # prompt, reference, answers with marked words
        significance.decorate_columns(columns, data, rows, metric, level, relative)
        shown = significance.shown_rows(data, rows, metric, level, bool(sig_on), len(table))
        sort, filters = _initial_sort_filter(state, current, key)
        for col in columns:
            for col_id, ascending in sort:
                if col.get("colId") == col_id:
                    col["sort"] = "asc" if ascending else "desc"
        grid = dag.AgGrid(
            id={"type": GRID, "key": key}, className="ag-theme-alpine cmp-grid", columnDefs=columns,
            rowModelType="infinite", filterModel=filters,
            defaultColDef={"resizable": True, "suppressHeaderMenuButton": True, "floatingFilter": False,
                           "suppressMovable": True},
            dashGridOptions={"cacheBlockSize": BLOCK, "maxBlocksInCache": 20, "infiniteInitialRowCount": 1,
                             "headerHeight": 78, "rowHeight": instance_row_height(data.kind) if rows == "instances" else 30,
                             "getRowId": {"function": "params.data.key"}, "tooltipShowDelay": 300,
                             "animateRows": False},
            style={"height": f"{_grid_height(shown, rows)}px", "width": "100%"})
        what = fig.ROW_LABELS[rows]
        crumb: Any = f"{what} rows · {fig.metric_label(metric)} · {'relative to base' if relative else 'absolute'}"
        undrill = hidden
        if drill is not None:
            label = (f"class {_class_label(data, drill.value)}" if drill.kind == "class"
                     else f"subgroup {drill.attribute} = {drill.value}")
            crumb = f"instances of {label} · {fig.metric_label(metric)}"
            undrill = {}
        changes = fig.changes_summary(models, data.prediction_changes(top=5))
        notes = [f"{m['name']}: outputs {data.unavailable[m['run_id']]}" for m in models
                 if m["run_id"] in data.unavailable]
        if rows == "subgroups" and not data.subgroup_attributes():
            notes.insert(0, "this dataset has no subgroup attributes (meta_<name> columns of its instances)")
        if status_note(data.kind, rows, data.subgroup_attributes()):
            notes.insert(0, status_note(data.kind, rows, data.subgroup_attributes()))
        notes[:0] = significance.status_notes(bool(sig_on), rows, shown, level)
        status = ("; ".join(notes)) if notes else ""
        ctx_data = {"key": key, "experiment": cmp["experiment"], "base": cmp["base"],
                    "run_ids": [m["run_id"] for m in models], "rows": rows, "metric": metric,
                    "relative": relative, "drill": drill.text() if drill else None, "flagged": bool(flagged),
                    "kind": data.kind, "significant": bool(sig_on), "level": level}
        return grid, ctx_data, options, crumb, undrill, _changes_children(changes, data.kind == "generation"), status

    @app.callback(Output({"type": GRID, "key": ALL}, "getRowsResponse"),
                  Output("ov-state", "data", allow_duplicate=True),
                  Input({"type": GRID, "key": ALL}, "getRowsRequest"),
                  State("cmp-beh-ctx", "data"), State("ov-state", "data"), prevent_initial_call=True)
    def get_rows(requests: list[dict[str, Any] | None], bctx: dict[str, Any] | None,
                 state: dict[str, Any] | None) -> tuple[Any, Any]:
        """One block of rows, sorted and filtered on the server; the sort and filter go into the URL."""
        if not bctx or not requests or not any(requests):
            raise PreventUpdate
        ids = ctx.outputs_list[0] if ctx.outputs_list else []
        responses: list[Any] = []
        new_state: Any = no_update
        for out_id, request in zip(ids, requests):
            if not request or out_id["id"]["key"] != bctx["key"]:
                responses.append(no_update)
                continue
            responses.append(_rows_response(source, bctx, request))
            if state and state.get("ready"):
                bsort = ",".join(f"{c}:{'asc' if a else 'desc'}" for c, a in fig.sort_spec(request.get("sortModel")))
                bfilter = json.dumps(request.get("filterModel"), separators=(",", ":")) \
                    if request.get("filterModel") else None
                if (state.get("bsort") or None, state.get("bfilter") or None) != (bsort or None, bfilter):
                    new_state = patch_changes(state, dict(state, bsort=bsort or None, bfilter=bfilter))
        return responses, new_state

    @app.callback(Output("cmp-beh-drill", "data", allow_duplicate=True),
                  Output("cmp-beh-rows", "value", allow_duplicate=True),
                  Output("cmp-beh-pick", "data"),
                  Input({"type": GRID, "key": ALL}, "cellClicked"), State("cmp-beh-ctx", "data"),
                  prevent_initial_call=True)
    def on_click(clicks: list[dict[str, Any] | None], bctx: dict[str, Any] | None) -> tuple[Any, ...]:
        """A click on a class or subgroup drills into its instances; on an instance, picks it for a flag."""
        click = next((c for c in clicks or [] if c), None)
        if not click or not bctx:
            raise PreventUpdate
        key = click.get("rowId")
        if key is None:
            raise PreventUpdate
        col = str(click.get("colId") or "")
        if bctx["rows"] == "classes" and col == "name":
            return f"class:{key}", "instances", no_update
        if bctx["rows"] == "subgroups" and col == "name":
            return f"subgroup:{key}", "instances", no_update
        if bctx["rows"] == "instances":
            index = int(col[1:]) if col.startswith("v") and col[1:].isdigit() else 0
            run_ids = bctx["run_ids"]
            return no_update, no_update, {"instance": str(key), "run_id": run_ids[min(index, len(run_ids) - 1)]}
        raise PreventUpdate

    @app.callback(Output("cmp-beh-drill", "data", allow_duplicate=True),
                  Output("cmp-beh-rows", "value", allow_duplicate=True),
                  Input("cmp-beh-undrill", "n_clicks"), State("cmp-beh-drill", "data"), prevent_initial_call=True)
    def undrill(n: int, drill_text: str | None) -> tuple[Any, Any]:
        if not n:
            raise PreventUpdate
        drill = _drill(drill_text)
        return None, "subgroups" if drill is not None and drill.kind == "subgroup" else "classes"

    @app.callback(Output("cmp-beh-download", "data"), Input("cmp-beh-csv", "n_clicks"),
                  State("cmp-beh-ctx", "data"), State("cmp-ctx", "data"), prevent_initial_call=True)
    def export_csv(n: int, bctx: dict[str, Any] | None, cmp: dict[str, Any] | None) -> Any:
        """The table as shown (rows, metric, absolute/relative, drill), every row, one column per model."""
        if not n or not bctx or not cmp:
            raise PreventUpdate
        data = source.comparisons(bctx["experiment"]).behaviours(bctx["base"], bctx["run_ids"])
        table = data.table(bctx["rows"], bctx["metric"], bctx["relative"], Drill.parse(bctx.get("drill")))
        names = {f"v{i}": m.get("full_name", m["name"]) for i, m in enumerate(cmp["models"])}
        names.update({f"p{i}": f"prediction: {m.get('full_name', m['name'])}" for i, m in enumerate(cmp["models"])})
        names.update({f"t{i}": f"answer: {m.get('full_name', m['name'])}" for i, m in enumerate(cmp["models"])})
        frame = table.rename(columns=names)
        suffix = "relative" if bctx["relative"] else "absolute"
        return dcc.send_data_frame(frame.to_csv, f"behaviours-{bctx['rows']}-{bctx['metric']}-{suffix}.csv",
                                   index=False)

    # -- flags ---------------------------------------------------------------------
    @app.callback(Output("cmp-flag-target", "options"), Output("cmp-flag-target", "value"),
                  Input("cmp-ctx", "data"), Input("cmp-beh-pick", "data"), State("cmp-flag-target", "value"),
                  prevent_initial_call=True)
    def flag_targets(cmp: dict[str, Any] | None, pick: dict[str, Any] | None, current: str | None) -> tuple[Any, Any]:
        if not cmp or not cmp.get("models"):
            return [], None
        options = [{"label": f"model: {m['name']}", "value": json.dumps([m["run_id"], MODEL_TARGET])}
                   for m in cmp["models"]]
        value = current if current in [o["value"] for o in options] else options[0]["value"]
        if pick and pick.get("instance"):
            name = next((m["name"] for m in cmp["models"] if m["run_id"] == pick["run_id"]), pick["run_id"])
            picked = json.dumps([pick["run_id"], instance_target(pick["instance"])])
            options.insert(0, {"label": f"instance {pick['instance']} ({name})", "value": picked})
            value = picked
        return options, value

    @app.callback(Output("cmp-flag-version", "data"), Output("cmp-flag-note", "value"),
                  Output("cmp-flag-msg", "children"),
                  Input("cmp-flag-add", "n_clicks"), Input("cmp-flag-note", "n_submit"),
                  State("cmp-flag-target", "value"), State("cmp-flag-note", "value"), State("cmp-ctx", "data"),
                  prevent_initial_call=True)
    def add_flag(_n: int, _submit: int, target: str | None, note: str | None,
                 cmp: dict[str, Any] | None) -> tuple[Any, ...]:
        """Write a flag to the model's run (a tag; see mlflow_cc.track.flags)."""
        if not cmp or not target:
            raise PreventUpdate
        if not (note or "").strip():
            return no_update, no_update, "write a short note first"
        try:
            run_id, flag_target = json.loads(target)
        except (TypeError, ValueError):
            return no_update, no_update, "not saved: unknown model"
        # The run id comes from the browser: it must be a model of the experiment on screen as
        # this server read it for this user (the user's own reader on a team server).
        try:
            problem = target_problem(source.forest(cmp.get("experiment")), run_id, flag_target)
        except Exception as exc:  # noqa: BLE001 - an experiment this user cannot read, or an outage
            return no_update, no_update, f"not saved: the experiment could not be read ({type(exc).__name__})"
        if problem:
            return no_update, no_update, f"not saved: {problem}"
        session = current_session()  # the signed-in user on a team server; else the default user
        try:
            # Written with the user's own MLflow client on a team server: MLflow decides.
            flag = source.flags(cmp["experiment"]).add(run_id, note or "", flag_target,
                                                       user=session.username if session is not None else None)
        except MlflowException as exc:  # MLflow decides who may write (e.g. READ-only: PERMISSION_DENIED)
            return no_update, no_update, f"not saved: MLflow refused the write ({exc.error_code})"
        except Exception as exc:  # noqa: BLE001 - the store went away: say so, never a callback error
            return no_update, no_update, f"not saved: the tracking store did not answer ({type(exc).__name__})"
        return flag.id, "", "flag saved to the model's MLflow run"

    app.clientside_callback(ClientsideFunction(namespace="cmp", function_name="refreshRows"),
                            Output("cmp-flag-msg", "title"), Input("cmp-flag-version", "data"),
                            prevent_initial_call=True)

    @app.callback(Output("cmp-flag-list", "children"),
                  Input("cmp-ctx", "data"), Input("cmp-flag-version", "data"), Input("cmp-flag-interval", "n_intervals"),
                  Input("cmp-flag-filter", "value"), State("cmp-flag-list", "children"), prevent_initial_call=True)
    def flag_list(cmp: dict[str, Any] | None, _version: Any, _n: Any, text: str | None,
                  shown: Any = None) -> Any:
        """Every flag on the compared models (re-read every few seconds, so teammates' flags appear).

        A list that reads the same is left as it is (``no_update``): redrawn, its remove buttons
        were replaced every few seconds, and a click landing during the swap was lost.
        """
        if not cmp or not cmp.get("models"):
            return []
        items = behaviour_flags.flag_items(source, cmp, text)
        return no_update if behaviour_flags.same_list(items, shown) else items

