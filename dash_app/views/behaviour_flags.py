"""Flags for review in the Behaviours tab, the parts beyond writing one: each listed flag's
remove button, and polling the flag list only while the Behaviours tab of the Performance
Comparison shows (the list is re-read every few seconds so that teammates' flags appear).

A removal is checked like a write (``add_flag`` in :mod:`dash_app.views.behaviours`): the run
id and flag id come from the browser, so the run must be a model of the experiment on screen
as this server read it for this user, and the flag one of that run's current flags; the tag
is deleted with the user's own MLflow client on a team server, so MLflow decides who may.
"""

from __future__ import annotations

import json
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate
from mlflow.exceptions import MlflowException
from plotly.utils import PlotlyJSONEncoder

from dash_app.source import DataSource
from mlflow_cc.track.flags import MODEL_TARGET, Flag, target_problem

REMOVE = "cmp-flag-rm"
#: The app tab's value of the Performance Comparison (``dash_app.views.comparison.TAB_VALUE``).
COMPARISON_TAB = "dash_app.views.comparison"


def item(line: str, flag: Flag) -> html.Li:
    """One listed flag (plain text) with its remove button."""
    return html.Li(className="cmp-flag-item", children=[
        html.Span(line),
        html.Button("✕", id={"type": REMOVE, "run": flag.run_id, "flag": flag.id}, n_clicks=0,
                    className="cmp-flag-rm", title="remove this flag")])


def flag_items(source: DataSource, cmp: dict[str, Any], text: str | None) -> list[Any]:
    """The list's items: every flag on the compared models (newest first) matching ``text``."""
    names = {m["run_id"]: m["name"] for m in cmp["models"]}
    flags = source.flags(cmp["experiment"]).flags(list(names))
    needle = (text or "").strip().lower()
    items = []
    for f in reversed(flags):
        what = "model" if f.instance_id is None else f"instance {f.instance_id}"
        line = f"{names.get(f.run_id, f.run_id)} · {what}: {f.note} — {f.user}, {f.time}"
        if needle and needle not in line.lower():
            continue
        items.append(item(line, f))
    return items or [html.Li("no flags yet" if not needle else "no flags match", className="cmp-muted")]


def same_list(items: list[Any], shown: Any) -> bool:
    """Whether ``items`` (components) draw what ``shown`` (the list's children as the browser
    sent them back) draws, the buttons' click counts aside."""
    if not isinstance(shown, list):
        return False
    return _drawn(json.loads(json.dumps(items, cls=PlotlyJSONEncoder))) == _drawn(shown)


def _drawn(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drawn(v) for k, v in node.items() if k not in ("n_clicks", "n_clicks_timestamp")}
    if isinstance(node, list):
        return [_drawn(v) for v in node]
    return node


def polling(app_tab: str | None, cmp_tab: str | None) -> bool:
    """Whether the flag list polls: only while the comparison's Behaviours tab shows."""
    return app_tab == COMPARISON_TAB and (cmp_tab or "behaviours") == "behaviours"


def register(app: Dash, source: DataSource) -> None:

    @app.callback(Output("cmp-flag-interval", "disabled"),
                  Input("app-tabs", "value"), Input("cmp-tab", "value"), prevent_initial_call=True)
    def poll_only_when_shown(app_tab: str | None, cmp_tab: str | None) -> bool:
        return not polling(app_tab, cmp_tab)

    @app.callback(Output("cmp-flag-version", "data", allow_duplicate=True),
                  Output("cmp-flag-msg", "children", allow_duplicate=True),
                  Input({"type": REMOVE, "run": ALL, "flag": ALL}, "n_clicks"), State("cmp-ctx", "data"),
                  prevent_initial_call=True)
    def remove(clicks: list[int | None], cmp: dict[str, Any] | None) -> tuple[Any, Any]:
        """Delete the clicked flag's tag from its run."""
        trig = ctx.triggered_id
        if not cmp or not isinstance(trig, dict) or not any(t.get("value") for t in ctx.triggered):
            raise PreventUpdate  # the list was redrawn: buttons appear with no click
        run_id, flag_id = trig.get("run"), trig.get("flag")
        try:
            problem = target_problem(source.forest(cmp.get("experiment")), run_id, MODEL_TARGET)
        except Exception as exc:  # noqa: BLE001 - an experiment this user cannot read, or an outage
            return no_update, f"not removed: the experiment could not be read ({type(exc).__name__})"
        if problem:
            return no_update, f"not removed: {problem}"
        board = source.flags(cmp["experiment"])
        try:
            if not any(f.id == flag_id and f.run_id == run_id for f in board.flags([run_id])):
                return no_update, "not removed: the flag is gone already"
            board.remove(run_id, str(flag_id))
        except MlflowException as exc:  # MLflow decides who may write (e.g. READ-only: PERMISSION_DENIED)
            return no_update, f"not removed: MLflow refused the write ({exc.error_code})"
        except Exception as exc:  # noqa: BLE001 - the store went away: say so, never a callback error
            return no_update, f"not removed: the tracking store did not answer ({type(exc).__name__})"
        return f"removed:{flag_id}", "flag removed from the model's MLflow run"
