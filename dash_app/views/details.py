"""Selection Details view: grouped bars explaining the selection, Refine Comparison, models, CSV."""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dash_app.figures.details import details_figure, value_label
from dash_app.selection_table import selection_csv, selection_rows
from dash_app.source import DataSource
from dash_app.views import details_changes, register_model
from dash_app.views.prologue import require_ready, view_data
from mlflow_cc.analysis.selection import Explanation, explain_selection, refine
from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest

MAX_ROWS = 60
GRAPH_CONFIG = {"displaylogo": False,
                "toImageButtonOptions": {"format": "svg", "filename": "selection-details"}}


def layout(source: DataSource, view: dict[str, Any] | None = None) -> html.Div:
    """The card; for a ready ``view`` its content is already in it (no callback draws it on load)."""
    ready = bool(view and view.get("ready"))
    return html.Div(className="cc-card", children=[
        html.Div(className="cc-card-head", children=[
            html.H3("Selection Details"),
            html.Button("Download selection CSV", id="ov-csv-btn", className="cc-right-btn"),
            dcc.Download(id="ov-csv"),
        ]),
        html.Div(id="ov-details", children=content(source, view) if ready else None),
        # one model selected: Register model
        register_model.form("ov", hidden=not (ready and register_model.one_selected(view))),
    ])


def primary_metrics(forest: Forest, infos: dict[str, MetricInfo], fallback: str | None) -> list[str]:
    names = forest.metric_names()
    prim = [n for n in names if info_for(infos, n).primary]
    return prim or ([fallback] if fallback in names else names[:1])


def explain(forest: Forest, ids: list[str]) -> Explanation:
    """The selection's variables (SPEC section 6)."""
    return explain_selection(forest, ids)


def content(source: DataSource, state: dict[str, Any]) -> Any:
    """What Selection Details shows for a ready view ``state`` (the layout and the callback)."""
    forest, infos = view_data(source, state)
    ids = [r for r in state.get("sel") or [] if r in forest.nodes]
    if not ids:
        return html.P("Select models in the map or the scatterplot: click, shift-click to add, "
                      "drag a box, or use + Descendants. Their comparison appears here.",
                      className="cc-hint")
    children: list[Any] = [html.H4(f"{len(ids)} model{'s' if len(ids) != 1 else ''} selected")]
    children.append(details_changes.block(forest, ids))  # what changed, in words
    ex: Explanation | None = explain(forest, ids)
    metrics = primary_metrics(forest, infos, state.get("color"))
    if ex is not None:
        if ex.comparable or len(ids) == 1:
            if ex.x is not None:
                children.append(html.P(
                    f"x: {ex.x.name}" + (f" · colour: {ex.color.name}" if ex.color else ""),
                    className="cc-muted"))
            if ex.constants:
                shared = ", ".join(f"{k} = {value_label(v)}" for k, v in ex.constants.items())
                children.append(html.P(f"all share: {shared}", className="cc-muted"))
            for m in metrics:
                fig = details_figure(forest, ids, ex.values, ex.x, ex.color, m, info_for(infos, m))
                children.append(dcc.Graph(id={"type": "ov-details-chart", "metric": m},
                                           figure=fig, config=GRAPH_CONFIG))
        else:
            children.append(_refine(ex))
    children.append(_table(source, state["experiment"], forest, infos, ids,
                           metrics + [m for m in (state.get("x"), state.get("size")) if m]))
    return children


def register(app: Dash, source: DataSource) -> None:

    @app.callback(Output("ov-details", "children"), Input("ov-view", "data"),
                  Input("ov-version", "data"), prevent_initial_call=True)
    def render(state: dict[str, Any], _v: Any) -> Any:
        return content(source, state)

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Input("ov-refine-apply", "n_clicks"),
                  State({"type": "ov-refine", "var": ALL}, "value"),
                  State({"type": "ov-refine", "var": ALL}, "id"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def on_refine(n: int | None, values: list[Any], ids: list[dict[str, str]],
                  state: dict[str, Any]) -> dict[str, Any]:
        """Narrow the selection to models whose variables take the picked values."""
        if not n or not state:
            raise PreventUpdate
        picks = {i["var"]: set(v) for i, v in zip(ids, values) if v}
        if not picks:
            raise PreventUpdate
        forest = source.forest(state["experiment"])
        sel = [r for r in state.get("sel") or [] if r in forest.nodes]
        ex = explain(forest, sel)
        choices = {var: [ex.refine_options[var][i] for i in idx if i < len(ex.refine_options.get(var, []))]
                   for var, idx in picks.items() if var in ex.refine_options}
        keep = refine(ex, choices)
        if not keep:
            raise PreventUpdate
        return {**state, "sel": [r for r in sel if r in set(keep)]}

    @app.callback(Output("ov-csv", "data"), Input("ov-csv-btn", "n_clicks"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def download(n: int | None, state: dict[str, Any]) -> Any:
        require_ready(state, n)
        forest = source.forest(state["experiment"])
        ids = [r for r in state.get("sel") or [] if r in forest.nodes] or list(forest.nodes)
        links = {r: source.run_url(state["experiment"], r) for r in ids}
        return {"content": selection_csv(forest, ids, links), "filename": "selection-metrics.csv",
                "type": "text/csv"}

    register_model.register_details(app, source)



def _refine(ex: Explanation) -> html.Div:
    names = [v.name for v in ex.variables]
    rows = []
    by_name = {v.name: v for v in ex.variables}
    for var, vals in ex.refine_options.items():
        v = by_name.get(var)
        options = [{"label": str(v.label(x)) if v else value_label(x), "value": i} for i, x in enumerate(vals)]
        rows.append(html.Label(className="cc-refine-row", children=[
            html.Span(var, className="cc-refine-var"),
            dcc.Dropdown(id={"type": "ov-refine", "var": var}, multi=True, className="cc-dd cc-dd-wide",
                         options=options, placeholder="any")]))
    return html.Div(className="cc-refine", children=[
        html.H4("Refine Comparison"),
        html.P(f"These models differ in {len(names)} ways ({', '.join(names)}), more than a chart "
               "can show. Pick values to narrow the selection.", className="cc-muted"),
        *rows,
        html.Button("Apply", id="ov-refine-apply"),
    ])


def _table(source: DataSource, experiment: str, forest: Forest, infos: dict[str, MetricInfo],
           ids: list[str], metrics: list[str]) -> html.Div:
    names = forest.metric_names()
    # the primary metrics, the plotted efficiency metric, then size and latency where they differ
    extra = [m for m in ("size_bytes", "latency_ms") if m in names
             and len({forest.nodes[r].metrics.get(m) for r in ids}) > 1]
    cols = list(dict.fromkeys([m for m in metrics if m in names] + extra))[:3]  # room for the names
    rows = selection_rows(forest, ids[:MAX_ROWS])
    # Fixed layout: the table is as wide as its panel; long names end in "…" (full text on hover).
    head = html.Tr([html.Th("model", className="cc-col-name"), html.Th("operation")]
                   + [html.Th(c, className="cc-num", title=c) for c in cols])
    body = [html.Tr([html.Td(html.A(r["name"], href=source.run_url(experiment, r["run_id"]),
                                    target="_blank", rel="noopener noreferrer",
                                    title=f"{r['name']}: open the run in the MLflow UI")),
                     html.Td(r["operation"], title=r["operation"])]
                    + [html.Td(info_for(infos, c).format_value(forest.nodes[r["run_id"]].metrics.get(c)),
                               className="cc-num")
                       for c in cols]) for r in rows]
    more = [html.P(f"… and {len(ids) - MAX_ROWS} more (all in the CSV)", className="cc-muted")] \
        if len(ids) > MAX_ROWS else []
    # Dash renders these as text (escaped): no HTML is built from user strings.
    return html.Div(className="cc-table-wrap", children=[html.Table([html.Thead(head), html.Tbody(body)],
                                                                    className="cc-table"), *more])
