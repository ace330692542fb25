"""The Model Map figure: nodes are models, tapered and colour-blended edges are operations (pure).

Edges are filled polygons (parent width to child width), cut into short pieces
whose colour blends parent to child; the pieces are grouped by quantised colour so
that a few hundred edges cost a dozen SVG traces. Nodes are SVG markers too: collapsing
keeps the map to a few hundred models, and measured in headless Chromium a WebGL context
costs more than drawing that many SVG markers. The scatterplot is SVG too: the app ships a
Plotly bundle with only scatter, bar and heatmap (no WebGL traces; ``dash_app/vendor.py``).
Trace ``customdata`` carries what a click means: a run id, ``col:<i>`` for a column
header, ``expand:<run id>`` for a collapsed subtree's badge.

Traces are built without Plotly's property validators (``_validate=False``, here and in the
scatterplot): the same JSON in half the server time (57 -> 28 ms for both figures at 52 models,
178 -> 101 ms at 5,000); ``tests/test_overview_scale.py`` rebuilds them through the validators.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dash_app.figures.encoding import (
    MISSING_COLOR,
    NODE_PX,
    SELECT_COLOR,
    Encoding,
    app_template,
    colors_for,
    colorscale_for,
    escape,
)
from dash_app.figures.legend_key import legend_to_key
from mlflow_cc.analysis.map_layout import MapLayout
from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest

COLOR_BINS = 12
#: Half edge width, in rows, for the smallest and largest size metric.
EDGE_HALF = (0.035, 0.16)
ROW_PX = 22
#: Typical width of a column on screen, for drawing edges of even width.
COL_PX = 60
HEADER_Y = -1.0
EXTRA_EDGE_COLOR = "#8e44ad"
#: Every node is labelled by name up to this many visible models; above, only the selected ones.
LABEL_ALL_MAX = 60
#: Approximate width of the map's plot area and of a label character, in pixels (for cutting names).
MAP_PX, CHAR_PX = 640, 5.6
#: Plot width the column labels can count on, and px per character of their 12 px font.
HEADER_MAP_PX, HEADER_CHAR_PX = 860, 6.8


NAN = float("nan")


def _arr(values: list[float]) -> np.ndarray:
    """Coordinates as float32 (sent to the browser as binary); NaN separates polygons."""
    return np.asarray(values, dtype=np.float32)


def _smooth(t: float) -> float:
    return t * t * (3 - 2 * t)


def _edge_path(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float, float]]:
    """Points (x, y, s) along an edge; s in [0, 1] from parent to child.

    The bend happens within the first column gap, then the edge runs straight, so a
    child several columns away reads as a horizontal line (as in the paper's map).
    """
    dx = x1 - x0
    bend = min(1.0, abs(dx)) * 0.85 if dx else 0.0
    pts: list[tuple[float, float, float]] = []
    if y0 == y1 or bend == 0.0:
        return [(x0, y0, 0.0), (x0 + dx / 2, y0 + (y1 - y0) / 2, 0.5), (x1, y1, 1.0)]
    n = 8
    for i in range(n + 1):
        u = i / n
        x = x0 + bend * u * (1 if dx > 0 else -1)
        pts.append((x, y0 + (y1 - y0) * _smooth(u), (x - x0) / dx))
    if abs(dx) > bend:
        mid = (pts[-1][0] + x1) / 2
        pts.append((mid, y1, (mid - x0) / dx))
        pts.append((x1, y1, 1.0))
    return pts


def _edge_traces(forest: Forest, layout: MapLayout, enc: Encoding,
                 excluded: set[str]) -> list[go.Scatter]:
    """Filled edges, one trace per colour bin; each run of an edge's segments in one bin is one
    polygon (a strip along the run), not a polygon per segment: Plotly draws a fill path per
    polygon, and per segment that was a thousand paths (half the map's drawing) at 5,000 models."""
    bins: dict[int, tuple[list[float], list[float]]] = {}
    faded: tuple[list[float], list[float]] = ([], [])
    lo, hi = EDGE_HALF
    for parent, child in layout.edges:
        pn, cn = forest.nodes[parent], forest.nodes[child]
        w0 = lo + (hi - lo) * enc.size_t(pn)
        w1 = lo + (hi - lo) * enc.size_t(cn)
        c0, c1 = enc.color_t(pn), enc.color_t(cn)
        pts = _edge_path(layout.x[parent], layout.y[parent], layout.x[child], layout.y[child])
        # unit offsets perpendicular to each segment on screen, so steep bends keep their width
        normals = []
        for (xa, ya, _sa), (xb, yb, _sb) in pairwise(pts):
            px, py = (xb - xa) * COL_PX, (yb - ya) * ROW_PX
            norm = math.hypot(px, py) or 1.0
            normals.append((-py / norm * ROW_PX / COL_PX, px / norm))
        keys = []
        for (_xa, _ya, sa), (_xb, _yb, sb) in pairwise(pts):
            if child in excluded:
                keys.append(None)
            elif c0 is None or c1 is None:
                keys.append(-1)
            else:
                keys.append(min(COLOR_BINS - 1, int((c0 + (c1 - c0) * (sa + sb) / 2) * COLOR_BINS)))
        start = 0
        for i in range(1, len(keys) + 1):
            if i < len(keys) and keys[i] == keys[start]:
                continue
            xs, ys = faded if keys[start] is None else bins.setdefault(keys[start], ([], []))
            _strip(xs, ys, pts, normals, start, i, w0, w1)
            start = i
    traces: list[go.Scatter] = []
    centers = [(b + 0.5) / COLOR_BINS for b in range(COLOR_BINS)]
    palette = colors_for(centers)
    for b, (xs, ys) in sorted(bins.items()):
        color = MISSING_COLOR if b < 0 else palette[b]
        traces.append(go.Scatter(_validate=False, x=_arr(xs), y=_arr(ys), mode="lines", fill="toself", fillcolor=color,
                                 line={"width": 0, "color": color}, hoverinfo="skip",
                                 showlegend=False, name="edges"))
    if faded[0]:
        traces.append(go.Scatter(_validate=False, x=_arr(faded[0]), y=_arr(faded[1]), mode="lines", fill="toself",
                                 fillcolor="rgba(200,200,200,0.25)", line={"width": 0},
                                 hoverinfo="skip", showlegend=False, name="filtered edges"))
    return traces


def _strip(xs: list[float], ys: list[float], pts: list[tuple[float, float, float]],
           normals: list[tuple[float, float]], first: int, end: int, w0: float, w1: float) -> None:
    """Append the closed polygon of segments ``first``..``end - 1`` of an edge to ``xs``/``ys``.

    At a vertex inside the run the offset is the mean of its two segments' normals (no seam
    or overlap where the edge bends); at the run's ends, the end segment's own normal.
    """
    left_x, left_y, right_x, right_y = [], [], [], []
    for v in range(first, end + 1):
        if v == first:
            ox, oy = normals[first]
        elif v == end:
            ox, oy = normals[end - 1]
        else:
            ox, oy = ((normals[v - 1][0] + normals[v][0]) / 2, (normals[v - 1][1] + normals[v][1]) / 2)
        x, y, t = pts[v]
        w = w0 + (w1 - w0) * t
        left_x.append(x - ox * w)
        left_y.append(y - oy * w)
        right_x.append(x + ox * w)
        right_y.append(y + oy * w)
    xs.extend((*left_x, *reversed(right_x), left_x[0], NAN))
    ys.extend((*left_y, *reversed(right_y), left_y[0], NAN))


def _extra_edge_trace(layout: MapLayout) -> go.Scatter | None:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for src, dst, _role in layout.extra_edges:
        x0, y0, x1, y1 = layout.x[src], layout.y[src], layout.x[dst], layout.y[dst]
        mx = (x0 + x1) / 2
        xs.extend((x0, mx, x1, None))
        ys.extend((y0, (y0 + y1) / 2 - 0.4, y1, None))
    if not xs:
        return None
    return go.Scatter(_validate=False, x=xs, y=ys, mode="lines", line={"color": EXTRA_EDGE_COLOR, "width": 1.6,
                                                      "dash": "dash", "shape": "spline"},
                      hoverinfo="skip", name="extra input (teacher, merged)", showlegend=True)


def map_figure(forest: Forest, layout: MapLayout, enc: Encoding, infos: Mapping[str, MetricInfo],
               hover: Mapping[str, str], selected: set[str], excluded: set[str]) -> go.Figure:
    """The Model Map for ``layout``; ``selected`` get a ring, ``excluded`` (filtered) fade."""
    traces: list[go.BaseTraceType] = list(_edge_traces(forest, layout, enc, excluded))
    extra = _extra_edge_trace(layout)
    if extra is not None:
        traces.append(extra)

    ncols = len(layout.columns)
    # Column headers: a clickable handle per column (label drawn as an annotation).
    traces.append(go.Scatter(_validate=False, 
        x=[c.index for c in layout.columns], y=[HEADER_Y] * ncols, mode="markers",
        marker={"symbol": "square", "size": 12, "color": "#dfe6ee",
                "line": {"color": "#8da2bb", "width": 1}},
        customdata=[f"col:{c.index}" for c in layout.columns],
        hovertext=[f"select every model in column {escape(c.label)}" for c in layout.columns],
        hoverinfo="text", showlegend=False, name="columns"))

    ids = layout.visible
    inc = [r for r in ids if r not in excluded]
    exc = [r for r in ids if r in excluded]
    for group, opacity, name in ((inc, 1.0, "models"), (exc, 0.18, "filtered out")):
        if not group and name == "filtered out":
            continue
        nodes = [forest.nodes[r] for r in group]
        traces.append(go.Scatter(_validate=False, 
            x=_arr([layout.x[r] for r in group]), y=_arr([layout.y[r] for r in group]), mode="markers",
            marker={"color": colors_for(enc.color_t(n) for n in nodes),
                    "size": _arr([enc.node_px(n) for n in nodes]).round(1), "opacity": opacity,
                    "line": {"color": "#ffffff", "width": 1}},
            customdata=group, hovertext=[hover.get(r, "") for r in group], hoverinfo="text",
            showlegend=False, name=name))

    if layout.collapsed:
        info = info_for(infos, enc.color) if enc.color else None
        cids = list(layout.collapsed)
        labels = []
        for r in cids:
            s = layout.collapsed[r]
            best = f" · best {escape(info.format_value(s.best))}" if info and s.best is not None else ""
            labels.append(f"+{s.count}{best}")
        traces.append(go.Scatter(_validate=False, 
            x=[layout.x[r] + 0.3 for r in cids], y=[layout.y[r] for r in cids], mode="markers+text",
            marker={"symbol": "triangle-right", "size": 11, "color": "#5b6b7f"},
            text=labels, textposition="middle right", textfont={"size": 10, "color": "#38485c"},
            customdata=[f"expand:{r}" for r in cids],
            hovertext=[f"{layout.collapsed[r].count} models collapsed here; click to expand"
                       for r in cids],
            hoverinfo="text", showlegend=False, name="collapsed"))

    # Always drawn, empty or not: the browser restyles this trace when the selection changes
    # (assets/overview.js), so a selection never redraws the figure.
    sel = [r for r in ids if r in selected]
    traces.append(go.Scatter(_validate=False, 
        x=[layout.x[r] for r in sel], y=[layout.y[r] for r in sel], mode="markers",
        marker={"symbol": "circle-open", "color": SELECT_COLOR,
                "size": [enc.node_px(forest.nodes[r]) + 7 for r in sel], "line": {"width": 2.5}},
        customdata=sel, hoverinfo="skip", showlegend=False, name="selected"))

    headers = _column_labels(layout)
    if headers is not None:
        traces.append(headers)
    fig = go.Figure(traces, layout={"template": app_template()}, _validate=False)
    labels = _node_labels(forest, layout, enc, selected, ncols)
    if labels is not None:
        fig.add_trace(labels)
    fig.update_layout(
        height=_height(layout), margin={"l": 10, "r": 10, "t": 10, "b": 10},
        plot_bgcolor="#ffffff", paper_bgcolor="#ffffff", dragmode="select", clickmode="event",
        hovermode="closest", uirevision="map",
        legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "top", "itemsizing": "trace",
                "font": {"size": 11}},
        xaxis={"visible": False, "range": [-0.6, max(ncols, 1) + 0.6], "fixedrange": False},
        yaxis={"visible": False, "range": [layout.rows - 0.4, HEADER_Y - 2.6]},
        newselection={"line": {"color": SELECT_COLOR}},
    )
    _attach_key(fig, forest, layout, enc, infos)
    return fig


def _attach_key(fig: go.Figure, forest: Forest, layout: MapLayout, enc: Encoding,
                infos: Mapping[str, MetricInfo]) -> None:
    """The map's key in ``layout.meta`` (:mod:`dash_app.figures.legend_key`), drawn as HTML above
    the map: the colour scale with its range (``key["color"]``), true-size node-size marks
    (``key["size"]``; Plotly capped legend symbols at 16 px) and the legend entries of other
    traces. An exported image gets Plotly's colour bar and size legend back (``export``)."""
    key: dict[str, Any] = {"color": None, "size": None}
    export: list[dict[str, Any]] = []
    if enc.color:
        lo, hi = enc.colorbar_range()
        info = info_for(infos, enc.color)
        scale = colorscale_for(enc)
        key["color"] = {
            "metric": enc.color, "lo": info.format_value(lo), "hi": info.format_value(hi),
            "ramp": "linear-gradient(to right, " + ", ".join(f"{c} {float(p) * 100:g}%" for p, c in scale) + ")",
            "darker": "higher" if info.higher_is_better else "lower",
            "missing": any(enc.color not in forest.nodes[r].metrics for r in layout.visible)}
        export.append(go.Scatter(
            _validate=False, x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
            marker={"colorscale": scale, "cmin": lo, "cmax": hi, "color": [lo],
                    "showscale": True,
                    "colorbar": {"title": {"text": escape(enc.color), "side": "right"},
                                 "thickness": 10, "len": min(1.0, 300 / _height(layout)),
                                 "y": 1.0, "yanchor": "top",
                                 "tickformat": "" if info.format == "bytes" else info.format.lstrip(",")}}
        ).to_plotly_json())
    size = _size_legend(enc, infos)
    if enc.size and size:
        info = info_for(infos, enc.size)
        lo, hi = enc.size_scale.lo, enc.size_scale.hi
        lo_px, hi_px = NODE_PX
        key["size"] = {"metric": enc.size, "marks": [
            {"px": round(lo_px + (hi_px - lo_px) * math.sqrt(enc.size_scale.norm(v) or 0.0), 1),
             "text": info.format_value(v)} for v in ([lo, hi] if hi > lo else [lo])]}
        export.extend(t.to_plotly_json() for t in size)
    legend_to_key(fig, key, export)


def _column_labels(layout: MapLayout) -> go.Scatter | None:
    """The columns' labels above their handles, one text trace (named "column labels").

    Not annotations: in a fresh page Plotly's first drawing of 16 annotations took 70 ms of the
    map's 300 (headless Chromium, 5,000 models). Labels alternate between two lines when one
    column's width cannot hold them all, and are cut to the room they have (the handle's
    tooltip has the whole label).
    """
    if not layout.columns:
        return None
    gap = HEADER_MAP_PX / (len(layout.columns) + 1.2) / HEADER_CHAR_PX
    two_lines = any(len(c.label) > gap - 1 for c in layout.columns) and len(layout.columns) > 1
    room = max(6, int(gap * (2 if two_lines else 1)) - 1)
    texts = [escape(c.label if len(c.label) <= room else c.label[: room - 1] + "…") for c in layout.columns]
    ys = [HEADER_Y - 0.8 - (0.9 if two_lines and i % 2 else 0.0) for i in range(len(layout.columns))]
    return go.Scatter(_validate=False, x=[c.index for c in layout.columns], y=ys, mode="text", text=texts,
                      textposition="middle center", textfont={"size": 12, "color": "#223"},
                      # a selection dims unselected points: the labels keep their colour (as annotations did)
                      unselected={"textfont": {"color": "#223"}},
                      hoverinfo="skip", showlegend=False, name="column labels")


def _node_labels(forest: Forest, layout: MapLayout, enc: Encoding, selected: set[str],
                 ncols: int) -> go.Scatter | None:
    """Model names right of their nodes: all when at most :data:`LABEL_ALL_MAX` models are shown,
    else the selected ones. Cut to the column gap (the tooltip has the full name), escaped, with a
    halo of the background colour so that edges do not run through the text.

    One text trace (named "node labels"), not an annotation per model: Plotly measures and places
    each annotation on its own, which took half of the map's drawing time at 52 models. Its
    invisible markers have each node's size, so the text starts right of the node; it takes no
    hover or clicks (the models below do).
    """
    ids = layout.visible if len(layout.visible) <= LABEL_ALL_MAX else [r for r in layout.visible if r in selected]
    if not ids:
        return None
    chars = max(8, min(40, int(MAP_PX / (max(ncols, 1) + 1.2) / CHAR_PX) - 4))
    last = max(ncols - 1, 0)
    texts = []
    for r in ids:
        name = forest.nodes[r].name
        room = chars * 2 if layout.x[r] >= last else chars  # the last column has the margin too
        texts.append(escape(name if len(name) <= room else name[: room - 1] + "…"))
    return go.Scatter(_validate=False, 
        x=_arr([layout.x[r] for r in ids]), y=_arr([layout.y[r] for r in ids]), mode="markers+text",
        text=texts, textposition="middle right",
        textfont={"size": 10, "color": "#2b3440", "shadow": "1px 1px 1px #fff, -1px -1px 1px #fff, "
                                                           "1px -1px 1px #fff, -1px 1px 1px #fff"},
        marker={"size": _arr([enc.node_px(forest.nodes[r]) for r in ids]).round(1), "opacity": 0},
        customdata=ids, hoverinfo="skip", showlegend=False, name="node labels")


def _size_legend(enc: Encoding, infos: Mapping[str, MetricInfo]) -> list[go.Scatter]:
    """Legend entries for node size: the smallest and largest value of the size metric.

    Plotly caps legend symbols at 16 px, so the two entries differ less than the nodes do; the
    text gives the values.
    """
    if not enc.size:
        return []
    info = info_for(infos, enc.size)
    lo, hi = enc.size_scale.lo, enc.size_scale.hi
    values = [lo, hi] if hi > lo else [lo]
    lo_px, hi_px = NODE_PX
    out = []
    for i, v in enumerate(values):
        t = 0.0 if i == 0 else 1.0
        out.append(go.Scatter(_validate=False, 
            x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=True,
            name=escape(("smallest " if len(values) > 1 and i == 0 else "largest " if i else "")
                        + info.format_value(v)),
            legendgroup="size", legendgrouptitle={"text": escape(f"node size: {enc.size}")} if i == 0 else None,
            marker={"size": lo_px + (hi_px - lo_px) * math.sqrt(t), "color": "#9aa7b6",
                    "line": {"color": "#ffffff", "width": 1}}))
    return out


def _height(layout: MapLayout) -> int:
    return max(420, int((layout.rows + 3.6) * ROW_PX) + 20)
