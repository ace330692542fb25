"""Legends drawn by the page, not by Plotly (pure).

Plotly's legend measures and places every entry on each first drawing, and a colour bar draws a
whole axis: in a profile at 52 models they were a third of the Model Map's first drawing (45 and
55 of 310 ms), and the scatterplot's and What-if's legends 30-40 ms each. The figures keep their
traces but hide them from Plotly's legend; ``layout.meta["key"]["entries"]`` lists what the page
draws as HTML beside the graph (``dash_app.views.legend_key``), and ``layout.meta["export"]`` what
an image exported by the graph's camera button gets back (``assets/overview.js``): ``traces`` to
add (a colour bar) and ``legend``, the indices of traces to show in Plotly's legend there.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go


def _in_legend(trace: Any) -> bool:
    """Whether Plotly would list ``trace`` in the legend (scatter traces do unless told not to)."""
    return bool(trace.showlegend) or (trace.showlegend is None and trace.type == "scatter")


def legend_to_key(fig: go.Figure, key: dict[str, Any] | None = None,
                  export: list[dict[str, Any]] | None = None) -> None:
    """Move ``fig``'s legend entries into ``layout.meta`` (see the module doc); ``key`` and
    ``export`` (traces for the image only) add to what an earlier call put there."""
    meta = dict(fig.layout.meta or {})
    old_key, old_export = dict(meta.get("key") or {}), dict(meta.get("export") or {})
    entries: list[dict[str, Any]] = list(old_key.get("entries") or [])
    legend: list[int] = list(old_export.get("legend") or [])
    for i, trace in enumerate(fig.data):
        if i in legend or not _in_legend(trace):
            continue
        if "lines" in (trace.mode or ""):
            entries.append({"name": trace.name, "line": {"color": trace.line.color,
                                                         "dash": trace.line.dash or "solid"}})
        else:
            color = trace.marker.color
            entries.append({"name": trace.name, "marker": {
                "color": color if isinstance(color, str) else None, "symbol": trace.marker.symbol or "circle"}})
        legend.append(i)
        trace.showlegend = False
    fig.update_layout(meta={**meta, "key": {**old_key, **(key or {}), "entries": entries},
                            "export": {"traces": [*(old_export.get("traces") or []), *(export or [])],
                                       "legend": legend}})
