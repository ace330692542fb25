"""Model Map view: the figure, its toolbar (grow selection, collapse, focus) and selection events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import plotly.io as pio
from dash import (
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

from dash_app import state as st
from dash_app.figures.encoding import MISSING_COLOR
from dash_app.figures.hover import hover_texts
from dash_app.figures.overview import dense_pick, map_figure_for, map_layout_for
from dash_app.source import DataSource
from dash_app.state_patch import patch_changes
from dash_app.views import find, legend_key
from dash_app.views.prologue import require_ready
from mlflow_cc.analysis.map_layout import MapLayout
from mlflow_cc.read.lineage import Forest

GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": True,
                "toImageButtonOptions": {"format": "svg", "filename": "model-map"},
                "modeBarButtonsToAdd": ["toImage"]}
GROW = {"ov-add-parents": "parents", "ov-add-children": "children",
        "ov-add-ancestors": "ancestors", "ov-add-descendants": "descendants"}


def layout(first: tuple[Any, str, list[Any]] | None = None, view: dict[str, Any] | None = None,
           version: str | None = None) -> html.Div:
    """The map card; ``first`` (figure, info, key) is the map already drawn for the page's URL."""
    fig, info, key_parts = first if first is not None else (None, "", [])
    return html.Div(className="cc-card cc-map-card", children=[
        html.Div(className="cc-card-head", children=[
            html.H3("Model Map"),
            html.Span(info, id="ov-map-info", className="cc-muted"),
        ]),
        html.Div(className="cc-toolbar", children=[
            html.Button("+ Parents", id="ov-add-parents"),
            html.Button("+ Children", id="ov-add-children"),
            html.Button("+ Ancestors", id="ov-add-ancestors"),
            html.Button("+ Descendants", id="ov-add-descendants"),
            html.Button("Clear selection", id="ov-clear-sel"),
            html.Span(className="cc-sep"),
            html.Button("Collapse selected", id="ov-collapse"),
            html.Button("Expand selected", id="ov-expand"),
            html.Button("Focus subtree", id="ov-focus"),
            html.Button("Show all", id="ov-unfocus"),
            html.Span(className="cc-sep"),
            find.layout(),
        ]),
        html.Div(key_parts, id="ov-map-key", className="cc-map-key"),
        dcc.Store(id="ov-map-drawn", data=[view, version] if first is not None else None),
        dcc.Store(id="ov-sel-shown"),
        html.Div(className="cc-map-scroll", children=[
            dcc.Graph(id="ov-map", config=GRAPH_CONFIG, className="cc-map-graph",
                      **({"figure": fig} if fig is not None else {})),
        ]),
    ])


def layout_of(source: DataSource, forest: Forest, state: dict[str, Any]) -> MapLayout:
    """The map's current layout, cached per forest and layout options."""
    infos = source.metric_info(state["experiment"])
    key = ("layout", state.get("layout"), state.get("color"), tuple(state.get("expand") or ()),
           tuple(state.get("collapse") or ()), tuple(state.get("sel") or ()), state.get("focus"))
    return source.cached(forest, key, lambda: map_layout_for(forest, infos, state))


def hover_of(source: DataSource, forest: Forest, experiment: str, ids: Iterable[str] | None) -> dict[str, str]:
    """Tooltips of ``ids`` (all models when ``None``), computed once per forest and model."""
    infos = source.metric_info(experiment)
    done: dict[str, str] = source.cached(forest, ("hover",), dict)
    todo = [r for r in (forest.nodes if ids is None else ids) if r not in done]
    if todo:
        done.update(hover_texts(forest, infos, todo))
    return done


def same_layout(a: MapLayout, b: MapLayout) -> bool:
    """Whether two layouts draw the same map (a selection can reveal collapsed models)."""
    return (a.x == b.x and a.y == b.y and a.edges == b.edges and a.extra_edges == b.extra_edges
            and list(a.collapsed) == list(b.collapsed) and a.focus == b.focus
            and [c.label for c in a.columns] == [c.label for c in b.columns])


def selection_only(source: DataSource, drawn: list[Any] | None, state: dict[str, Any],
                   version: str | None) -> bool:
    """Whether ``state`` differs from the drawn map's only in a selection the browser shows itself."""
    if not drawn or drawn[1] != version or st.figure_part(drawn[0]) != st.figure_part(state):
        return False
    forest = source.forest(state["experiment"])
    return same_layout(layout_of(source, forest, drawn[0]), layout_of(source, forest, state))


def figure_digest(fig: Any) -> str:
    """A short digest of what a figure draws (equal digests: the browser's figure needs no redraw)."""
    return hashlib.blake2b(pio.to_json(fig, validate=False).encode(), digest_size=12).hexdigest()


def key(spec: dict[str, Any]) -> list[Any]:
    """The map's key (:func:`dash_app.views.legend_key.take` of its figure, see
    :func:`dash_app.figures.model_map._attach_key`) as HTML: the colour scale, the node sizes and
    the legend entries of other marks."""
    parts: list[Any] = []
    color = spec.get("color")
    if color:
        parts.append(html.Span(className="cc-key-item", title=f"{color['metric']}: {color['darker']} is better",
                               children=[
            html.Span(f"colour: {color['metric']}", className="cc-key-name"),
            html.Span(color["lo"], className="cc-key-value"),
            html.Span(className="cc-key-ramp", style={"background": color["ramp"]}),
            html.Span(color["hi"], className="cc-key-value"),
            html.Span("darker is better", className="cc-muted")]))
        if color.get("missing"):
            parts.append(html.Span([legend_key.dot(MISSING_COLOR), f"{color['metric']} not logged"],
                                   className="cc-key-item"))
    size = spec.get("size")
    if size:
        marks: list[Any] = [html.Span(f"node size: {size['metric']}", className="cc-key-name")]
        for mark in size["marks"]:
            marks += [legend_key.dot(px=f"{mark['px']}px"), html.Span(mark["text"], className="cc-key-value")]
        parts.append(html.Span(marks, className="cc-key-item"))
    return parts + legend_key.entries(spec)


def draw(source: DataSource, state: dict[str, Any]) -> tuple[Any, str, list[Any]]:
    """The map figure for ``state``, its one-line summary and its key."""
    forest = source.forest(state["experiment"])
    infos = source.metric_info(state["experiment"])
    lay = layout_of(source, forest, state)
    hover = hover_of(source, forest, state["experiment"], lay.x)
    fig = map_figure_for(forest, infos, state, hover, lay)
    info = f"{len(lay.x)} of {len(forest)} models shown"
    if lay.collapsed:
        info += f" · {len(lay.collapsed)} subtrees collapsed (click ▸ to expand)"
    if lay.focus:
        info += f" · focused on {forest.nodes[lay.focus].name}"
    return fig, info, key(legend_key.take(fig))


# The map goes first: the scatterplot (thousands of points) is asked for once the map's
# figure is on its way (``ov-map-drawn``), so the browser draws the map meanwhile.
def register(app: Dash, source: DataSource) -> None:
    find.register(app, source)

    @app.callback(Output("ov-map", "figure"), Output("ov-map-info", "children"),
                  Output("ov-map-key", "children"), Output("ov-map-drawn", "data"),
                  Input("ov-view", "data"), Input("ov-version", "data"), State("ov-map-drawn", "data"),
                  prevent_initial_call=True)
    def render(state: dict[str, Any], version: str | None, drawn: list[Any] | None) -> tuple[Any, ...]:
        """Redraw on a change (the page's first map comes with the layout).

        Not for a selection change that keeps the layout: the browser has already restyled the
        rings, and a redraw landing between a later mouse-down and mouse-up loses that click.
        """
        require_ready(state)
        if selection_only(source, drawn, state, version):
            raise PreventUpdate
        fig, info, key_parts = draw(source, state)
        digest = figure_digest(fig)
        if drawn and len(drawn) > 2 and drawn[2] == digest:
            # e.g. a refresh whose new runs or metrics are all collapsed away: nothing to redraw
            return no_update, no_update, no_update, [state, version, digest]
        return fig, info, key_parts, [state, version, digest]

    # Clicks, column headers and boxes of both plots change the selection in the browser at once
    # and write it into ov-state (assets/overview.js); the badge of a collapsed subtree comes
    # here as an ov-pick event (the shift key rides along: Dash's clickData has no modifiers).
    app.clientside_callback(
        ClientsideFunction(namespace="cc", function_name="pick"),
        Output("ov-pick", "data"), Output("ov-state", "data", allow_duplicate=True),
        Input("ov-map", "clickData"), Input("ov-map", "selectedData"),
        Input("ov-scatter", "clickData"), Input("ov-scatter", "selectedData"),
        State("ov-state", "data"), prevent_initial_call=True)
    # Any other change of the state (toolbar, Refine, URL) or a redrawn figure: ring the state's
    # selection in both graphs.
    app.clientside_callback(
        ClientsideFunction(namespace="cc", function_name="reconcile"),
        Output("ov-sel-shown", "data"),
        Input("ov-state", "data"), Input("ov-map-drawn", "data"), Input("ov-scatter-drawn", "data"))

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  Input("ov-pick", "data"), State("ov-state", "data"), prevent_initial_call=True)
    def on_pick(event: dict[str, Any] | None, state: dict[str, Any]) -> Any:
        """A click or box the browser hands over (the badge of a collapsed subtree).

        Writes only the keys it changes, so a selection made meanwhile in the browser stays.
        """
        require_ready(state, event)
        return patch_changes(state, _picked(event, state))

    def _picked(event: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        forest = source.forest(state["experiment"])
        excluded = st.excluded_ids(forest, state.get("filters"))
        ids: list[str] = event.get("ids") or []
        state = dict(state)
        if event.get("range") or event.get("cell"):  # the scatterplot's density layer
            picked = dense_pick(forest, source.metric_info(state["experiment"]), state, event)
            state["sel"] = st.pick(state.get("sel") or [], picked, bool(event.get("shift")), excluded, forest)
            return state
        expand = [i.split(":", 1)[1] for i in ids if i.startswith("expand:")]
        if expand and event.get("kind") == "click":
            state["expand"] = list(dict.fromkeys((state.get("expand") or []) + expand))
            state["collapse"] = [r for r in state.get("collapse") or [] if r not in expand]
            return state
        cols = [int(i.split(":", 1)[1]) for i in ids if i.startswith("col:")]
        picked = [i for i in ids if ":" not in i]
        if cols and event.get("kind") == "click":
            lay = layout_of(source, forest, state)
            picked = [r for c in cols for r in lay.column_members(c)]
            state["sel"] = st.pick(state.get("sel") or [], picked, bool(event.get("shift")), excluded, forest)
            return state
        additive = bool(event.get("shift"))
        if not picked and event.get("kind") == "box" and not additive:
            state["sel"] = []
            return state
        state["sel"] = st.pick(state.get("sel") or [], picked, additive, excluded, forest)
        return state

    @app.callback(Output("ov-state", "data", allow_duplicate=True),
                  *[Input(b, "n_clicks") for b in GROW], Input("ov-clear-sel", "n_clicks"),
                  Input("ov-collapse", "n_clicks"), Input("ov-expand", "n_clicks"),
                  Input("ov-focus", "n_clicks"), Input("ov-unfocus", "n_clicks"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def on_toolbar(*args: Any) -> Any:
        state = dict(args[-1] or {})
        trig = ctx.triggered_id
        if not state.get("ready") or trig is None:
            raise PreventUpdate
        return patch_changes(args[-1], _toolbar(trig, state))

    def _toolbar(trig: str, state: dict[str, Any]) -> dict[str, Any]:
        forest = source.forest(state["experiment"])
        sel = [r for r in state.get("sel") or [] if r in forest.nodes]
        if trig in GROW:
            state["sel"] = st.grow(forest, sel, GROW[trig], st.excluded_ids(forest, state.get("filters")))
        elif trig == "ov-clear-sel":
            state["sel"] = []
        elif trig == "ov-collapse":
            state["collapse"] = list(dict.fromkeys((state.get("collapse") or []) + sel))
            state["expand"] = [r for r in state.get("expand") or [] if r not in sel]
            # keep the collapsed models themselves selected but not their hidden descendants
            hidden = {d for r in sel for d in forest.descendants(r)}
            state["sel"] = [r for r in sel if r not in hidden]
        elif trig == "ov-expand":
            state["expand"] = list(dict.fromkeys((state.get("expand") or []) + sel))
            state["collapse"] = [r for r in state.get("collapse") or [] if r not in sel]
        elif trig == "ov-focus":
            if not sel:
                raise PreventUpdate
            state["focus"] = min(sel, key=lambda r: forest.nodes[r].depth)
        elif trig == "ov-unfocus":
            state["focus"] = None
            state["expand"], state["collapse"] = [], []
        return state
