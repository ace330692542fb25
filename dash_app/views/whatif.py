"""What-if view: how the best model improves as a budget relaxes (figure, table, CSV).

Pick a budget metric (size, nonzero bytes, latency…) and a quality metric; the staircase
(:mod:`mlflow_cc.analysis.whatif`) is drawn over the models within the *other* budgets of the
Filters card, with the current budget marked. A click on a step selects its model the way a click
in the map does (``assets/whatif.js`` writes the selection into ``ov-state``). The two metrics live
in the shared state (``weff``, ``wq``), so the URL keeps them.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dash_app.figures.whatif import budget_words, whatif_figure
from dash_app.select import Select
from dash_app.selection_table import spreadsheet_safe
from dash_app.source import DataSource
from dash_app.state_patch import patch_changes
from dash_app.views import legend_key
from dash_app.views.prologue import require_ready, view_data
from mlflow_cc.analysis.model_labels import distinct_labels
from mlflow_cc.analysis.whatif import (
    Staircase,
    default_pair,
    efficiency_options,
    outside_budgets,
    step_rows,
    whatif,
)
from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest

GRAPH_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": "what-if"}}
#: The other models are drawn as grey context up to this many (an SVG point each).
OTHERS_MAX = 3000
#: Model titles in the table are longer than a comparison column's (one column has room).
LABEL_CHARS = 44
CSV_FIELDS = ("step", "budget", "quality", "gain", "model", "name", "run_id", "tied", "within_current")


def layout(pickers: tuple[Any, ...] | None = None) -> html.Div:
    """The panel; ``pickers``: :func:`picker_values` for the page's state (the layout carries them)."""
    eff_opts, q_opts, eff, q = pickers or ([], [], None, None)
    return html.Div(className="cc-card", id="ov-whatif-card", children=[
        html.Div(className="cc-card-head", children=[
            html.H3("What if"),
            html.Span("the best model as a budget relaxes; click a step to select it", className="cc-muted"),
            html.Button("Download table CSV", id="ov-whatif-csv-btn", className="cc-right-btn"),
            dcc.Download(id="ov-whatif-csv"),
        ]),
        html.Div(className="cc-axis-pickers", children=[
            html.Label(["Budget on", Select(id="ov-whatif-eff", clearable=False, className="cc-dd",
                                            options=eff_opts, value=eff)]),
            html.Label(["Best", Select(id="ov-whatif-q", clearable=False, className="cc-dd",
                                       options=q_opts, value=q)]),
        ]),
        html.Div(id="ov-whatif-summary", className="cc-muted"),
        dcc.Graph(id="ov-whatif-graph", config=GRAPH_CONFIG),
        html.Div(id="ov-whatif-legend", className="cc-graph-key"),  # the graph's legend, as HTML
        dcc.Store(id="ov-whatif-key"),
        dcc.Store(id="ov-whatif-drawn"),
        html.Div(id="ov-whatif-table", className="cc-table-wrap"),
    ])


def picker_values(source: DataSource, state: dict[str, Any]) -> tuple[Any, ...]:
    """(budget options, quality options, budget metric, quality metric) for a ready ``state``."""
    forest, infos = view_data(source, state)
    eff, q = chosen(forest, infos, state)
    return ([{"label": n, "value": n} for n in efficiency_options(forest, infos)],
            [{"label": n, "value": n} for n in forest.metric_names()], eff, q)


def chosen(forest: Forest, infos: dict[str, MetricInfo], state: dict[str, Any]) -> tuple[str | None, str | None]:
    """The state's (budget metric, quality metric), completed with the defaults."""
    names = forest.metric_names()
    eff, q = default_pair(forest, infos, state.get("color"))
    eff = state.get("weff") if state.get("weff") in names else eff
    q = state.get("wq") if state.get("wq") in names else q
    return eff, q


def compute(forest: Forest, infos: dict[str, MetricInfo], state: dict[str, Any]
            ) -> tuple[Staircase | None, dict[str, str]]:
    """The staircase for the state (None without two metrics) and distinct labels of its models."""
    eff, q = chosen(forest, infos, state)
    if not eff or not q:
        return None, {}
    sc = whatif(forest, infos, eff, q, state.get("filters"))
    return sc, distinct_labels(forest, [s.run_id for s in sc.steps], max_chars=LABEL_CHARS)


def staircase_csv(rows: list[dict[str, Any]], eff: str, q: str) -> str:
    """The table as CSV: raw numbers, the model's title and run; text cells safe for spreadsheets."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([f"budget {eff}" if f == "budget" else f"best {q}" if f == "quality" else f
                for f in CSV_FIELDS])
    for r in rows:
        w.writerow([spreadsheet_safe("" if r[f] is None else r[f]) for f in CSV_FIELDS])
    return buf.getvalue()


def _table(rows: list[dict[str, Any]], e_info: MetricInfo, q_info: MetricInfo, current: int | None) -> html.Table:
    head = html.Tr([html.Th("#", className="cc-num"),
                    html.Th(f"{e_info.name} {budget_words(e_info)}", className="cc-num"),
                    html.Th(f"best {q_info.name}", className="cc-num"), html.Th("gain", className="cc-num"),
                    html.Th("model", className="cc-col-name")])
    body = []
    for i, r in enumerate(rows):
        gain = "" if r["gain"] is None else ("+" if r["gain"] >= 0 else "") + q_info.format_value(r["gain"])
        body.append(html.Tr(className="cc-whatif-current" if i == current else
                            "" if r["within_current"] else "cc-whatif-beyond", children=[
            html.Td(str(r["step"]), className="cc-num"),
            html.Td(e_info.format_value(r["budget"]), className="cc-num"),
            html.Td(q_info.format_value(r["quality"]), className="cc-num"),
            html.Td(gain, className="cc-num"),
            html.Td(r["model"], title=f"{r['name']} ({r['run_id']})", className="cc-col-name")]))
    return html.Table(className="cc-table cc-whatif-rows", children=[html.Thead(head), html.Tbody(body)])


def _summary(sc: Staircase, e_info: MetricInfo, q_info: MetricInfo, labels: dict[str, str]) -> str:
    parts = [f"{sc.considered} model{'s' if sc.considered != 1 else ''} with both metrics"]
    if sc.outside_other:
        parts[0] += f" within the other budgets ({sc.outside_other} left out by them)"
    if sc.current is None:
        parts.append(f"no budget on {e_info.name} yet: brush one in Filters to mark it")
    elif sc.current_step is None:
        parts.append("no model fits the current budget")
    else:
        s = sc.steps[sc.current_step]
        parts.append(f"current budget reaches {q_info.format_value(s.quality)} with {labels.get(s.run_id, s.run_id)}")
        if sc.current_step + 1 < len(sc.steps):
            nxt = sc.steps[sc.current_step + 1]
            parts.append(f"next: {q_info.format_value(nxt.quality)} at {e_info.format_value(nxt.budget)}")
    return " · ".join(parts)


def register(app: Dash, source: DataSource) -> None:

    @app.callback(Output("ov-whatif-eff", "options"), Output("ov-whatif-q", "options"),
                  Output("ov-whatif-eff", "value"), Output("ov-whatif-q", "value"),
                  Input("ov-color", "options"), State("ov-state", "data"), prevent_initial_call=True)
    def pickers(options: list[dict[str, str]] | None, state: dict[str, Any]) -> tuple[Any, ...]:
        """Metric choices follow the experiment; values come from the state (URL) or the defaults."""
        require_ready(state, options)
        return picker_values(source, state)

    @app.callback(Output("ov-state", "data", allow_duplicate=True), Input("ov-whatif-eff", "value"),
                  Input("ov-whatif-q", "value"), State("ov-state", "data"), prevent_initial_call=True)
    def on_pick(eff: str | None, q: str | None, state: dict[str, Any]) -> Any:
        """A metric picked by hand goes into the state (and the URL); the defaults stay implicit."""
        require_ready(state, eff, q)
        forest, infos = view_data(source, state)
        if (eff, q) == chosen(forest, infos, state):
            raise PreventUpdate
        return patch_changes(state, {**state, "weff": eff, "wq": q})

    # The browser derives the panel's key from the state, so a selection change costs no request.
    app.clientside_callback(
        ClientsideFunction(namespace="ccWhatif", function_name="key"),
        Output("ov-whatif-key", "data"), Input("ov-state", "data"), State("ov-whatif-key", "data"))

    @app.callback(Output("ov-whatif-graph", "figure"), Output("ov-whatif-table", "children"),
                  Output("ov-whatif-summary", "children"), Output("ov-whatif-drawn", "data"),
                  Output("ov-whatif-legend", "children"),
                  Input("ov-whatif-key", "data"), Input("ov-version", "data"), State("ov-state", "data"),
                  State("ov-whatif-drawn", "data"))
    def render(panel: str | None, version: str | None, state: dict[str, Any], drawn: Any) -> tuple[Any, ...]:
        """Redrawn when the experiment, the budgets, the two metrics or the models change
        (not for a selection)."""
        require_ready(state, panel)
        forest, infos = view_data(source, state)
        key = [panel, version]
        if key == drawn:
            raise PreventUpdate
        sc, labels = compute(forest, infos, state)
        if sc is None:
            return {}, "", "the experiment needs two metrics for a what-if", key, []
        e_info, q_info = info_for(infos, sc.efficiency), info_for(infos, sc.quality)
        out = outside_budgets(forest, state.get("filters"), skip=[sc.efficiency])
        considered = [(n.metrics.get(sc.efficiency), n.metrics.get(sc.quality))
                      for rid, n in forest.nodes.items() if rid not in out]
        pts = [(float(e), float(q)) for e, q in considered if e is not None and q is not None]
        on_steps = {(s.budget, s.quality) for s in sc.steps}
        extent = (min(p[0] for p in pts), max(p[0] for p in pts)) if pts else None
        others = [p for p in pts if p not in on_steps] if len(pts) <= OTHERS_MAX else []
        fig = whatif_figure(sc, e_info, q_info, labels, others, extent)
        rows = step_rows(forest, sc, labels)
        return (fig, _table(rows, e_info, q_info, sc.current_step), _summary(sc, e_info, q_info, labels), key,
                legend_key.entries(legend_key.take(fig)))

    @app.callback(Output("ov-whatif-csv", "data"), Input("ov-whatif-csv-btn", "n_clicks"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def download(n: int | None, state: dict[str, Any]) -> Any:
        require_ready(state, n)
        forest, infos = view_data(source, state)
        sc, labels = compute(forest, infos, state)
        if sc is None:
            raise PreventUpdate
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"what-if-{sc.efficiency}-{sc.quality}")
        return {"content": staircase_csv(step_rows(forest, sc, labels), sc.efficiency, sc.quality),
                "filename": f"{name}.csv", "type": "text/csv"}

    # A click on a step selects its model, in the browser, like a click in the map.
    app.clientside_callback(
        ClientsideFunction(namespace="ccWhatif", function_name="pick"),
        Output("ov-state", "data", allow_duplicate=True),
        Input("ov-whatif-graph", "clickData"), State("ov-state", "data"), prevent_initial_call=True)
