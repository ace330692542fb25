"""The prologue every view callback shares: wait for the page state, then read the experiment."""

from __future__ import annotations

from typing import Any

from dash.exceptions import PreventUpdate

from dash_app.source import DataSource
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.read.lineage import Forest

#: The Performance Comparison's tab value (``app-tabs``): its module's name, as ``dash_app.app`` sets it.
COMPARISON_TAB = "dash_app.views.comparison"


def require_ready(state: dict[str, Any] | None, *conditions: Any) -> dict[str, Any]:
    """``state`` once the page has read its URL (and every condition holds); else no update."""
    if not state or not state.get("ready") or not all(conditions):
        raise PreventUpdate
    return state


def view_data(source: DataSource, state: dict[str, Any] | None) -> tuple[Forest, dict[str, MetricInfo]]:
    """The experiment's forest and metric metadata for a ready ``state``."""
    state = require_ready(state)
    return source.forest(state["experiment"]), source.metric_info(state["experiment"])
