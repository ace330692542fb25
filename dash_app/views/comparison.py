"""Performance Comparison: the selected models against a base, in two tabs (Behaviours, Layers).

The selection comes from the Compression Overview's state (``ov-state``, the one source of
truth, mirrored in the URL); this page adds its own keys to that state (see
``dash_app.state.CMP_TEXT_KEYS``). ``cmp-ctx`` holds what the tabs compare: the
experiment, the models in display order (base first) and the base.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dash_app import state as st
from dash_app.comparison import choose_base, ordered_models
from dash_app.source import DataSource
from dash_app.state_patch import patch_changes
from dash_app.views import behaviours, layers, register_model
from dash_app.views.prologue import COMPARISON_TAB, require_ready
from mlflow_cc.analysis.model_labels import distinct_labels

TITLE = "Performance Comparison"
TAB_VALUE = COMPARISON_TAB
assert TAB_VALUE == __name__  # the app's tab value is the module's name
#: The app tab's value in the URL (``tab=comparison``).
URL_TAB = "comparison"


def layout(source: DataSource) -> html.Div:
    """Base model control, the compared models, and the Behaviours / Layers tabs."""
    return html.Div(className="cmp-page", children=[
        dcc.Store(id="cmp-ctx"),
        dcc.Store(id="cmp-init"),
        # The overview's URL writer is not mounted while this tab shows: this one writes the same query.
        dcc.Location(id="cmp-url-out", refresh=False),
        html.Div(className="cmp-controls", children=[
            html.Label(["Base model", dcc.Dropdown(id="cmp-base", clearable=False, className="cc-dd cc-dd-wide",
                                                   style={"minWidth": "320px"})]),
            html.Div(className="cmp-base-side", children=[
                html.Div(id="cmp-base-why", className="cmp-base-why"),
                html.Div(id="cmp-models", className="cmp-status"),
            ]),
        ]),
        register_model.form("cmp", register_model.comparison_picker()),
        dcc.Tabs(id="cmp-tab", value="behaviours", className="cmp-tabs", children=[
            dcc.Tab(label="Behaviours", value="behaviours", children=behaviours.layout()),
            dcc.Tab(label="Layers", value="layers", children=layers.layout()),
        ]),
    ])


def context(source: DataSource, state: dict[str, Any]) -> dict[str, Any]:
    """What to compare: experiment, models (base first, with distinct titles) and base, or a message.

    Each model: ``name`` (its column title, distinct among the compared models, see
    :func:`~mlflow_cc.analysis.model_labels.distinct_labels`), ``full_name`` (the run name),
    ``label`` (its operation and parameters), ``title`` (the tooltip: all three and the run id).
    """
    exp = state.get("experiment")
    forest = source.forest(exp)
    selected = [r for r in state.get("sel") or [] if r in forest.nodes]
    if not selected:
        return {"experiment": exp, "models": [], "base": None, "base_why": "",
                "message": "Select models in the Compression Overview (click, shift-click or drag a box) "
                           "to compare them here."}
    choice = choose_base(forest, selected, state.get("base"))
    assert choice is not None
    base = choice.run_id
    run_ids = ordered_models(forest, selected, base)
    titles = distinct_labels(forest, run_ids, base)
    models = []
    for r in run_ids:
        node = forest.nodes[r]
        models.append({"run_id": r, "name": titles[r], "full_name": node.name, "label": node.label(),
                       "title": f"{node.name}\n{node.label()}\nrun {r}",
                       "url": source.run_url(node.experiment_id, r)})
    why = f"Base: {titles[base]} — {choice.reason}."
    return {"experiment": exp, "models": models, "base": base, "base_why": why, "message": None}


def register(app: Dash, source: DataSource, refresh_ms: int = 3000) -> None:
    """The page's callbacks and those of both tabs."""

    @app.callback(Output("cmp-ctx", "data"), Output("cmp-base", "options"), Output("cmp-base", "value"),
                  Output("cmp-models", "children"), Output("cmp-base-why", "children"),
                  Input("ov-state", "data"), Input("app-tabs", "value"), State("cmp-ctx", "data"),
                  prevent_initial_call=True)
    def on_state(state: dict[str, Any] | None, app_tab: str | None,
                 current: dict[str, Any] | None) -> tuple[Any, ...]:
        """The compared models, only while this page shows: every grid, chart and list of the
        comparison follows from them, so a selection made in the overview costs no comparison
        work until the page is opened (and the overview's first load sends none of it)."""
        require_ready(state, app_tab == TAB_VALUE)
        new = context(source, state)
        if new == current:
            raise PreventUpdate
        options = [{"label": m["name"], "value": m["run_id"], "title": m["title"]} for m in new["models"]]
        if new["message"]:
            summary: Any = new["message"]
        else:
            n = sum(1 for m in new["models"] if m["run_id"] != new["base"])
            summary = f"{n} model{'s' if n != 1 else ''} compared against the base"
        return new, options, new["base"], summary, new["base_why"]

    @app.callback(Output("cmp-tab", "value"), Output("app-tabs", "value"), Output("cmp-init", "data"),
                  Input("ov-state", "data"), State("cmp-init", "data"), State("cmp-tab", "value"))
    def init(state: dict[str, Any] | None, done: bool | None, current: str | None) -> tuple[Any, ...]:
        """Controls from the URL, once per page load; the page's tab when the URL asks for it.

        The only comparison callback that runs on load: the others wait for the app's tab to
        change, which this sets when the page opens on the comparison, or the user does.
        A value already shown is left alone (no update: nothing downstream runs for it).
        """
        require_ready(state, not done)
        tab = TAB_VALUE if state.get("tab") == URL_TAB else no_update
        ctab = state.get("ctab") if state.get("ctab") in ("behaviours", "layers") else "behaviours"
        return (no_update if ctab == current else ctab), tab, True

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Input("cmp-base", "value"), Input("cmp-tab", "value"), Input("app-tabs", "value"),
                  State("ov-state", "data"), State("cmp-init", "data"), prevent_initial_call=True)
    def write(base: str | None, ctab: str | None, app_tab: str | None, state: dict[str, Any] | None,
              done: bool | None) -> dict[str, Any]:
        """User changes of the base and the tabs go into the shared state (and so the URL)."""
        require_ready(state, done)
        new = dict(state)
        trig = ctx.triggered_id
        if trig == "cmp-base" and base:
            new["base"] = base
        elif trig == "cmp-tab" and ctab:
            new["ctab"] = ctab
        elif trig == "app-tabs":
            new["tab"] = URL_TAB if app_tab == TAB_VALUE else None
        if new == state:
            raise PreventUpdate
        return patch_changes(state, new)

    @app.callback(Output("cmp-url-out", "search"), Input("ov-state", "data"), prevent_initial_call=True)
    def to_url(state: dict[str, Any] | None) -> str:
        if not state or not state.get("ready") or state.get("tab") != URL_TAB:
            raise PreventUpdate
        return st.to_query(state)

    register_model.register_comparison(app, source)
    behaviours.register(app, source, refresh_ms=refresh_ms)
    layers.register(app, source, context)
