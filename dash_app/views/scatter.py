"""Model Scatterplot view: the figure and its axis pickers (rendered with the map)."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, Patch, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dash_app import state as st
from dash_app.figures.encoding import Encoding
from dash_app.figures.overview import (
    scatter_figure_for,
    scatter_is_dense,
    scatter_models,
    scatter_needs_hover,
)
from dash_app.select import Select
from dash_app.source import DataSource
from dash_app.views import legend_key
from dash_app.views.model_map import figure_digest, hover_of
from dash_app.views.prologue import require_ready, view_data

GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": True,
                "toImageButtonOptions": {"format": "svg", "filename": "model-scatterplot"}}


def layout(options: list[dict[str, str]] | None = None, state: dict[str, Any] | None = None,
           first: tuple[Any, list[Any], list[Any]] | None = None) -> html.Div:
    """The card; ``options``/``state``: the axis pickers as the URL's state has them (the layout
    carries them: no callback sets them on load); ``first``: :func:`first_figure`, if any."""
    state = state or {}
    fig, drawn, key = first if first is not None else (None, None, [])
    return html.Div(className="cc-card", children=[
        html.Div(className="cc-card-head", children=[
            html.H3("Model Scatterplot"),
            html.Span(key, id="ov-scatter-key",
                      className="cc-graph-key cc-right-btn")]),
        dcc.Graph(id="ov-scatter", config=GRAPH_CONFIG, **({"figure": fig} if fig is not None else {})),
        dcc.Store(id="ov-scatter-drawn", data=drawn),
        html.Div(className="cc-axis-pickers", children=[
            html.Label(["X", Select(id="ov-x", clearable=False, className="cc-dd", options=options or [],
                                    value=state.get("x"))]),
            html.Label(["Y", Select(id="ov-y", clearable=False, className="cc-dd", options=options or [],
                                    value=state.get("y"))]),
        ]),
    ])


def draw(source: DataSource, state: dict[str, Any], version: str | None) -> tuple[Any, list[Any], list[Any]]:
    """The figure for a ready ``state``, what ``ov-scatter-drawn`` records of it (the state's
    figure part, ``version``, the rings' trace on a density layer, the figure's digest) and its
    key above the graph (the Pareto front's entry)."""
    forest, infos = view_data(source, state)
    hover = hover_of(source, forest, state["experiment"], None) if scatter_needs_hover(forest) else {}
    fig = scatter_figure_for(forest, infos, state, hover)
    ring = next((i for i, t in enumerate(fig.data) if t.name == "selected"), None)
    key = legend_key.entries(legend_key.take(fig))
    return fig, [st.figure_part(state), version, ring if scatter_is_dense(forest, state) else None,
                 figure_digest(fig)], key


def first_figure(source: DataSource, state: dict[str, Any],
                 version: str | None) -> tuple[Any, list[Any], list[Any]] | None:
    """The scatterplot for the page's layout when it has a marker per model (small experiments);
    a density layer (thousands of models) comes from the callback once the map is on its way."""
    forest = source.forest(state["experiment"])
    return None if scatter_is_dense(forest, state) else draw(source, state, version)


def register(app: Dash, source: DataSource) -> None:

    @app.callback(Output("ov-scatter", "figure"), Output("ov-scatter-drawn", "data"),
                  Output("ov-scatter-key", "children"),
                  Input("ov-map-drawn", "data"), State("ov-scatter-drawn", "data"))
    def render(drawn: list[Any] | None, mine: list[Any] | None) -> Any:
        """Drawn after the map (see model_map.render), from the same state.

        A map redrawn for a selection (one that revealed collapsed models) leaves the scatterplot
        alone: the browser restyles its selection rings (assets/overview.js).
        """
        state, version = (drawn or [None, None])[:2]
        require_ready(state)
        if [st.figure_part(state), version] == (mine or [])[:2]:
            raise PreventUpdate  # drawn already (the layout carried it, or nothing changed)
        fig, new, key = draw(source, state, version)
        if mine and len(mine) > 3 and mine[3] == new[3]:
            return no_update, [*new[:2], mine[2], new[3]], no_update  # a refresh that changes nothing drawn here
        return fig, new, key

    @app.callback(Output("ov-scatter", "figure", allow_duplicate=True), Input("ov-state", "data"),
                  State("ov-scatter-drawn", "data"), prevent_initial_call=True)
    def rings(state: dict[str, Any] | None, drawn: list[Any] | None) -> Any:
        """The density layer's selection rings, patched in (the browser has no markers to ring).

        Only the "selected" trace changes: a selection never redraws the figure.
        """
        require_ready(state, drawn and len(drawn) > 2 and drawn[2] is not None)
        assert drawn is not None and state is not None
        if st.figure_part(state) != drawn[0]:
            raise PreventUpdate  # a redraw is on its way and rings the selection itself
        forest, infos = view_data(source, state)
        x, y = state["x"], state["y"]
        enc = Encoding.build(forest, infos, state.get("color"), state.get("size"))
        ok = set(scatter_models(forest, state))
        sel = [r for r in state.get("sel") or [] if r in ok]
        patch = Patch()
        trace = patch["data"][drawn[2]]
        trace["x"] = [forest.nodes[r].metrics[x] for r in sel]
        trace["y"] = [forest.nodes[r].metrics[y] for r in sel]
        trace["customdata"] = sel
        trace["marker"]["size"] = [enc.node_px(forest.nodes[r]) + 7 for r in sel]
        return patch

    @app.callback(Output("ov-x", "options"), Output("ov-y", "options"), Output("ov-x", "value"),
                  Output("ov-y", "value"), Input("ov-color", "options"), State("ov-state", "data"),
                  prevent_initial_call=True)
    def axis_options(options: list[dict[str, str]] | None, state: dict[str, Any]) -> tuple[Any, ...]:
        """Metric choices follow the experiment; values come from the state (URL or defaults)."""
        require_ready(state, options)
        return options, options, state.get("x"), state.get("y")

    @app.callback(Output("ov-state", "data", allow_duplicate=True), Input("ov-x", "value"),
                  Input("ov-y", "value"), State("ov-state", "data"), prevent_initial_call=True)
    def on_axes(x: str | None, y: str | None, state: dict[str, Any]) -> dict[str, Any]:
        if not state or not state.get("ready") or not x or not y:
            raise PreventUpdate
        if (x, y) == (state.get("x"), state.get("y")):
            raise PreventUpdate
        return {**state, "x": x, "y": y}
