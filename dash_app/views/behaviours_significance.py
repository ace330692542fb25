"""The Behaviours grid's significance: the *significant only* row filter and the level control
(both in the URL: ``sig=on``, ``alpha=0.01``), and the marks on cells and headers
(:mod:`dash_app.figures.significance`; the tests are computed once per comparison by
:mod:`dash_app.comparison.significance_set`).
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dash_app.comparison import BehaviourSet
from dash_app.comparison import significance_set as sig
from dash_app.figures import significance as sigfig
from dash_app.state_patch import patch_changes
from dash_app.views.prologue import COMPARISON_TAB, require_ready


def controls() -> list[Any]:
    """The *significant only* filter and the level (false discovery rate) dropdown."""
    return [
        html.Label(["Significance", dcc.Checklist(
            id="cmp-beh-sig", inline=True, className="cc-radio", value=[],
            options=[{"label": "significant only", "value": "on",
                      "title": "rows where a model differs from the base after the Benjamini–Hochberg correction"}])]),
        html.Label(["Level", dcc.Dropdown(
            id="cmp-beh-alpha", clearable=False, className="cc-dd", style={"minWidth": "90px"}, value=sig.LEVEL_TEXT,
            options=[{"label": f"{level:.0%}", "value": f"{level:g}"} for level in sig.LEVELS])]),
        dcc.Store(id="cmp-sig-init"),
    ]


def decorate_columns(columns: list[dict[str, Any]], data: BehaviourSet, rows: str, metric: str, level: float,
                     relative: bool) -> None:
    """Headers get each model's dataset-wide difference and interval; class/subgroup cells their tests."""
    sigfig.decorate_columns(columns, sig.overall(data, metric, level), metric, level, rows in sig.TESTED_ROWS,
                            relative)


def shown_rows(data: BehaviourSet, rows: str, metric: str, level: float, only: bool, total: int) -> int:
    """How many rows the grid shows (its height): the significant ones with *significant only*."""
    if not only or rows not in sig.TESTED_ROWS:
        return total
    return len(sig.significant_keys(data, rows, metric, level))


def status_notes(only: bool, rows: str, shown: int, level: float) -> list[str]:
    """What *significant only* did, when it needs saying."""
    if not only:
        return []
    if rows not in sig.TESTED_ROWS:
        return ["significant only filters class and subgroup rows"]
    return [] if shown else [f"no {rows[:-1]} differs significantly from the base at {level:.0%}"]


def row_filters(data: BehaviourSet, bctx: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """The *significant only* filter as a server-side row filter (none for instance rows)."""
    if not bctx.get("significant") or bctx["rows"] not in sig.TESTED_ROWS:
        return []
    return [("key", "in", sig.significant_keys(data, bctx["rows"], bctx["metric"], bctx["level"]))]


def decorate_page(rows: list[dict[str, Any]], data: BehaviourSet, bctx: dict[str, Any]) -> None:
    """Tooltips and markers of one page of rows."""
    level = bctx.get("level", sig.LEVEL)
    sigfig.decorate_rows(rows, sig.cells(data, bctx["rows"], bctx["metric"], level), bctx["metric"], level)


def register(app: Dash) -> None:
    """The controls from the URL once per page load, and back into the URL."""

    @app.callback(Output("cmp-beh-sig", "value"), Output("cmp-beh-alpha", "value"), Output("cmp-sig-init", "data"),
                  Input("ov-state", "data"), Input("app-tabs", "value"), State("cmp-sig-init", "data"),
                  prevent_initial_call=True)
    def init(state: dict[str, Any] | None, app_tab: str | None, done: bool | None) -> tuple[Any, ...]:
        require_ready(state, not done, app_tab == COMPARISON_TAB)
        return ["on"] if state.get("sig") == "on" else [], f"{sig.parse_level(state.get('alpha')):g}", True

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Input("cmp-beh-sig", "value"), Input("cmp-beh-alpha", "value"),
                  State("ov-state", "data"), State("cmp-sig-init", "data"), prevent_initial_call=True)
    def write(on: list[str] | None, alpha: str | None, state: dict[str, Any] | None,
              done: bool | None) -> dict[str, Any]:
        require_ready(state, done)
        level = sig.parse_level(alpha)
        new = dict(state, sig="on" if on else None, alpha=None if level == sig.LEVEL else f"{level:g}")
        if new == state:
            raise PreventUpdate
        return patch_changes(state, new)
