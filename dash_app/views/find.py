"""Find a model by name: a search box over the experiment's models that selects the one picked.

The options are searched on the server (the first :data:`MAX_OPTIONS` names containing the
text), so the page never carries a list of 50,000 names. A picked model becomes the selection:
the map reveals it (a small selection is always shown, collapsed or not), Selection Details
explain it, and the scatterplot rings it.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc
from dash.exceptions import PreventUpdate

from dash_app import state as st
from dash_app.source import DataSource
from dash_app.state_patch import patch_changes
from dash_app.views.prologue import require_ready, view_data
from mlflow_cc.read.lineage import Forest

MAX_OPTIONS = 30


def layout() -> dcc.Dropdown:
    return dcc.Dropdown(id="ov-find", placeholder="find a model by name…", searchable=True, clearable=True,
                        className="cc-dd cc-dd-wide cc-find", options=[])


def matches(forest: Forest, text: str, limit: int = MAX_OPTIONS) -> list[dict[str, str]]:
    """Options for the models whose name contains ``text`` (any case): names starting with it
    first, then shorter names; at most ``limit``."""
    needle = text.strip().lower()
    if not needle:
        return []
    found = [(n.name.lower().find(needle), len(n.name), n.name, r) for r, n in forest.nodes.items()
             if needle in n.name.lower()]
    found.sort(key=lambda f: (f[0] != 0, f[1], f[2]))
    return [{"label": name, "value": rid} for _, _, name, rid in found[:limit]]


def register(app: Dash, source: DataSource) -> None:

    @app.callback(Output("ov-find", "options"), Input("ov-find", "search_value"),
                  State("ov-find", "value"), State("ov-state", "data"), prevent_initial_call=True)
    def options(text: str | None, value: str | None, state: dict[str, Any]) -> list[dict[str, str]]:
        if not text:
            raise PreventUpdate  # keep what is shown (the picked model's option)
        forest, _ = view_data(source, state)
        opts = matches(forest, text)
        if value in forest.nodes and all(o["value"] != value for o in opts):
            opts.append({"label": forest.nodes[value].name, "value": value})
        return opts

    @app.callback(Output("ov-state", "data", allow_duplicate=True), Input("ov-find", "value"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def select(value: str | None, state: dict[str, Any]) -> Any:
        require_ready(state, value)
        forest, _ = view_data(source, state)
        if value not in forest.nodes:
            raise PreventUpdate
        new = dict(state, sel=[value])
        focus = state.get("focus")
        if focus and focus != value and value not in forest.descendants(focus):
            new["focus"] = None  # the model is outside the focused subtree: show everything
        if value in st.excluded_ids(forest, state.get("filters")):
            new["filters"] = {}  # a filtered-out model cannot be selected: clear the filters
        return patch_changes(state, new)
