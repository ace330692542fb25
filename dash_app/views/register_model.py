"""*Register model*: one model of the tree into MLflow's Model Registry, from Selection Details (the
one selected model) and from Performance Comparison (a compared model picked in a dropdown).

The form is the same in both places, its ids prefixed (``ov-reg-*``, ``cmp-reg-*``). The write goes
through :func:`mlflow_cc.track.register.register_model` with the client of the experiment's reader:
on a team server the signed-in user's own client, so MLflow's permissions decide (a READ-only
user gets MLflow's refusal, shown as a message). The run id comes from the browser: it must be a
model of the experiment as this server read it for this user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate
from mlflow.exceptions import MlflowException

from dash_app.source import DataSource
from mlflow_cc.track.register import register_model

#: ``target(state) -> (experiment, run id)`` of the model to register, or None.
Target = Callable[..., "tuple[str, str] | None"]
DEFAULT_ALIAS = "candidate"


def form(prefix: str, picker: Any | None = None, *, hidden: bool = False) -> html.Div:
    """The *Register model* controls (``picker``: a model dropdown placed first, if any)."""
    return html.Div(id=f"{prefix}-reg", className="cc-register", style={"display": "none"} if hidden else {},
                    children=[
        *([picker] if picker is not None else []),
        html.Label(["Registered model", dcc.Input(id=f"{prefix}-reg-name", type="text", debounce=False,
                                                  placeholder="name in the registry", className="cc-reg-input")]),
        html.Label(["Alias", dcc.Input(id=f"{prefix}-reg-alias", type="text", value=DEFAULT_ALIAS,
                                       placeholder="none", className="cc-reg-input cc-reg-alias")]),
        html.Button("Register model", id=f"{prefix}-reg-btn", className="cc-btn", n_clicks=0),
        html.Div(id=f"{prefix}-reg-msg", className="cc-muted cc-reg-msg", role="status"),
    ])


def register_callbacks(app: Dash, source: DataSource, prefix: str, target: Target, *states: State) -> None:
    """The click: ``target(*states)`` names the experiment and the model (None: nothing to register)."""

    @app.callback(Output(f"{prefix}-reg-msg", "children"), Input(f"{prefix}-reg-btn", "n_clicks"),
                  State(f"{prefix}-reg-name", "value"), State(f"{prefix}-reg-alias", "value"), *states,
                  prevent_initial_call=True)
    def on_register(n: int | None, name: str | None, alias: str | None, *values: Any) -> Any:
        if not n:
            raise PreventUpdate
        picked = target(*values)
        if picked is None:
            return "not registered: select one model first"
        return register_message(source, *picked, name, alias)


def register_message(source: DataSource, experiment: str, run_id: str, name: str | None, alias: str | None) -> str:
    """Register ``run_id`` and say what happened (never raises: every outcome is a message)."""
    try:
        reader = source.reader(experiment)
        forest = reader.forest()
    except Exception as exc:  # noqa: BLE001 - an experiment this user cannot read, or an outage
        return f"not registered: the experiment could not be read ({type(exc).__name__})"
    node = forest.nodes.get(run_id) if isinstance(run_id, str) else None
    if node is None or node.external:
        return "not registered: not a model of this experiment"
    name = (name or "").strip() or reader.experiment_name
    alias = (alias or "").strip() or None
    try:
        reg = register_model(run_id, name, alias=alias, client=reader.client)
    except MlflowException as exc:  # MLflow decides (READ-only user: PERMISSION_DENIED; a bad name)
        return f"not registered: MLflow refused ({exc.error_code}): {exc.message[:200]}"
    except Exception as exc:  # noqa: BLE001 - the store went away: say so, never a callback error
        return f"not registered: {type(exc).__name__}: {str(exc)[:200]}"
    alias_text = f", alias @{reg.alias}" if reg.alias else ""
    return f"Registered {node.name} as {reg.name} version {reg.version}{alias_text} — {reg.lineage_text}"


def register_details(app: Dash, source: DataSource) -> None:
    """Selection Details: the form shows when exactly one model is selected."""

    @app.callback(Output("ov-reg", "style"), Input("ov-view", "data"), prevent_initial_call=True)
    def show(state: dict[str, Any] | None) -> dict[str, str]:
        return {} if one_selected(state) else {"display": "none"}

    register_callbacks(app, source, "ov", one_selected, State("ov-view", "data"))


def one_selected(state: dict[str, Any] | None) -> tuple[str, str] | None:
    sel = (state or {}).get("sel") or []
    if not state or not state.get("ready") or len(sel) != 1:
        return None
    return state["experiment"], sel[0]


def comparison_picker() -> html.Label:
    return html.Label(["Model", dcc.Dropdown(id="cmp-reg-model", clearable=False, className="cc-dd")])


def register_comparison(app: Dash, source: DataSource) -> None:
    """Performance Comparison: any compared model, the first compressed one by default."""

    @app.callback(Output("cmp-reg-model", "options"), Output("cmp-reg-model", "value"),
                  Input("cmp-ctx", "data"), State("cmp-reg-model", "value"), prevent_initial_call=True)
    def models(cmp: dict[str, Any] | None, current: str | None) -> tuple[Any, Any]:
        models = (cmp or {}).get("models") or []
        if not models:
            return [], None
        options = [{"label": m["name"], "value": m["run_id"], "title": m["title"]} for m in models]
        ids = [m["run_id"] for m in models]
        if current in ids:
            return options, no_update
        others = [r for r in ids if r != cmp.get("base")]  # type: ignore[union-attr]
        return options, (others or ids)[0]

    def target(run_id: str | None, cmp: dict[str, Any] | None) -> tuple[str, str] | None:
        if not run_id or not cmp or run_id not in {m["run_id"] for m in cmp.get("models") or []}:
            return None
        return cmp["experiment"], run_id

    register_callbacks(app, source, "cmp", target, State("cmp-reg-model", "value"), State("cmp-ctx", "data"))
