"""Graph keys drawn as HTML from a figure's ``layout.meta["key"]`` (``dash_app.figures.legend_key``).

Names are shown as text (never markup): Plotly's escaped names are unescaped first, and React
escapes what it renders.
"""

from __future__ import annotations

from html import unescape
from typing import Any

from dash import html

DOT_PX = "10px"


def spec(fig: Any) -> dict[str, Any]:
    """The figure's key (a ``go.Figure`` or its JSON dict); empty when it has none."""
    layout = fig.get("layout") or {} if isinstance(fig, dict) else fig.layout
    meta = layout.get("meta") if isinstance(layout, dict) else layout.meta
    return (meta or {}).get("key") or {}


def dot(color: str | None = None, px: str = DOT_PX) -> html.Span:
    style = {"width": px, "height": px, **({"background": color} if color else {})}
    return html.Span(className="cc-key-dot", style=style)


def entries(fig: Any) -> list[Any]:
    """One item per legend entry of ``fig``: a swatch (line, dot or cross) and the name."""
    out = []
    for entry in spec(fig).get("entries") or []:
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
