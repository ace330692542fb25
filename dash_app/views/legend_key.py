"""Graph keys drawn as HTML from a figure's ``layout.meta["key"]`` (``dash_app.figures.legend_key``),
taken out of the figure before it is sent (:func:`take`).

Names are shown as text (never markup): Plotly's escaped names are unescaped first, and React
escapes what it renders.
"""

from __future__ import annotations

from html import unescape
from typing import Any

from dash import html

DOT_PX = "10px"


def take(fig: Any) -> dict[str, Any]:
    """The figure's key, taken out of its ``layout.meta`` (empty when it has none).

    The page draws the key from it; the browser's figure keeps only what Plotly draws and the
    export (``meta["export"]``). The key holds user text as typed (metric names, units), which
    no figure sent to the browser may carry unescaped (tests/test_security_local.py).
    """
    meta = dict(fig.layout.meta or {})
    spec = meta.pop("key", None) or {}
    fig.layout.meta = meta or None
    return spec


def dot(color: str | None = None, px: str = DOT_PX) -> html.Span:
    style = {"width": px, "height": px, **({"background": color} if color else {})}
    return html.Span(className="cc-key-dot", style=style)


def entries(spec: dict[str, Any]) -> list[Any]:
    """One item per legend entry of a key (:func:`take`): a swatch (line, dot or cross) and the name."""
    out = []
    for entry in spec.get("entries") or []:
        if "line" in entry:
            dash = entry["line"].get("dash") or "solid"
            swatch = html.Span(className="cc-key-line", style={
                "borderTopColor": entry["line"].get("color") or "#444",
                "borderTopStyle": "dotted" if dash == "dot" else "dashed" if "dash" in dash else "solid"})
        else:
            marker = entry["marker"]
            swatch = (html.Span("×", className="cc-key-cross", style={"color": marker.get("color")})
                      if str(marker.get("symbol")).startswith("x") else dot(marker.get("color")))
        out.append(html.Span([swatch, unescape(str(entry["name"]))], className="cc-key-item"))
    return out
