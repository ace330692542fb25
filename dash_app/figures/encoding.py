"""Colour and size encodings shared by the Model Map and the Model Scatterplot (pure)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import sample_colorscale

from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest, ModelNode

#: Light (worse) to dark (better), close to the paper's grey-to-black map.
COLORSCALE: list[list[float | str]] = [[0.0, "#e4e7ec"], [0.35, "#9db3cf"], [0.7, "#3f6aa1"],
                                       [1.0, "#0b2545"]]
MISSING_COLOR = "#c9c9c9"
SELECT_COLOR = "#f26b1d"
NODE_PX = (10.0, 28.0)  # the smallest model must stay clickable
#: The trace types the app's figures draw (``dash_app/vendor.py`` builds Plotly with these).
TRACE_TYPES = ("scatter", "bar", "heatmap")
#: Subplot kinds the app never draws: their defaults stay out of the template.
_UNUSED_LAYOUT = ("polar", "ternary", "scene", "geo", "mapbox", "map", "smith")


@functools.cache
def app_template() -> go.layout.Template:
    """Plotly's default look (its "plotly" template) for what the app draws, and nothing else.

    The full template, which every figure carries when none is given, holds defaults for 24
    trace types and five kinds of subplot: 7 KB of JSON in each figure sent to the browser, parsed
    and kept in the page's JS heap for each graph. This one keeps the layout defaults (fonts,
    colours, axes, hover labels) and the defaults of :data:`TRACE_TYPES`, so figures look the same.
    """
    base = pio.templates["plotly"]
    layout = {k: v for k, v in base.layout.to_plotly_json().items() if k not in _UNUSED_LAYOUT}
    data = {t: base.data[t] for t in TRACE_TYPES}
    return go.layout.Template(layout=layout, data=data)


def escape(text: object) -> str:
    """User text for Plotly text, labels and hover templates, shown as typed.

    Plotly renders a subset of HTML (``<b>``, ``<a href>``, ``<br>``, entities) in every
    text it draws, and expands ``%{...}`` in hover and text templates; so ``&``, ``<``,
    ``>`` become entities, and the ``%`` of ``%{`` becomes ``&#37;`` (Plotly shows it as
    ``%`` without expanding it).
    """
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("%{", "&#37;{"))


@dataclass(frozen=True)
class Scale:
    """Linear map of a metric onto [0, 1]; ``reverse`` when lower is better (colour)."""

    lo: float
    hi: float
    reverse: bool = False

    def norm(self, v: float | None) -> float | None:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        t = 0.5 if self.hi <= self.lo else (v - self.lo) / (self.hi - self.lo)
        t = min(1.0, max(0.0, t))
        return 1.0 - t if self.reverse else t


def metric_scale(forest: Forest, metric: str | None, reverse: bool = False) -> Scale:
    """Range of ``metric`` over all models (not only the visible ones, so colours stay put)."""
    vals = [n.metrics[metric] for n in forest.nodes.values() if metric and metric in n.metrics]
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return Scale(0.0, 1.0, reverse)
    return Scale(min(vals), max(vals), reverse)


@dataclass(frozen=True)
class Encoding:
    """The user's choice of colour and size metrics, with their scales."""

    color: str | None
    size: str | None
    color_scale: Scale
    size_scale: Scale

    @classmethod
    def build(cls, forest: Forest, infos: Mapping[str, MetricInfo], color: str | None,
              size: str | None) -> Encoding:
        reverse = bool(color) and not info_for(infos, color or "").higher_is_better
        return cls(color, size, metric_scale(forest, color, reverse), metric_scale(forest, size))

    def color_t(self, node: ModelNode) -> float | None:
        return self.color_scale.norm(node.metrics.get(self.color)) if self.color else None

    def size_t(self, node: ModelNode) -> float:
        t = self.size_scale.norm(node.metrics.get(self.size)) if self.size else None
        return 0.35 if t is None else t

    def node_px(self, node: ModelNode) -> float:
        """Marker diameter in pixels; area grows with the size metric."""
        lo, hi = NODE_PX
        return lo + (hi - lo) * math.sqrt(self.size_t(node))

    def colorbar_range(self) -> tuple[float, float]:
        return self.color_scale.lo, self.color_scale.hi


def colors_for(ts: Iterable[float | None]) -> list[str]:
    """Hex colours on :data:`COLORSCALE` for normalised values (grey when missing)."""
    ts = list(ts)
    known = [t for t in ts if t is not None]
    sampled = iter(sample_colorscale(COLORSCALE, known, colortype="rgb")) if known else iter(())
    return [MISSING_COLOR if t is None else next(sampled) for t in ts]


def colorscale_for(enc: Encoding) -> list[list[float | str]]:
    """The colourscale oriented so that the colour bar reads in the metric's own units."""
    if enc.color_scale.reverse:
        return [[1.0 - float(p), c] for p, c in reversed(COLORSCALE)]
    return COLORSCALE


#: Efficiency metrics in order of preference for the default size encoding and scatter x:
#: the bytes of nonzero weights first (pruning and quantization both reduce it).
EFFICIENCY_METRICS = ("nonzero_bytes", "nonzero_count", "size_bytes", "sparsity", "latency_ms",
                      "param_count")


def varies(forest: Forest, metric: str) -> bool:
    """Whether ``metric`` takes at least two different values across the models."""
    seen: set[float] = set()
    for n in forest.nodes.values():
        v = n.metrics.get(metric)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            seen.add(v)
            if len(seen) > 1:
                return True
    return False


def coverage(forest: Forest, metric: str) -> int:
    """How many models logged ``metric``."""
    return sum(1 for n in forest.nodes.values() if metric in n.metrics)


def default_metrics(forest: Forest, infos: Mapping[str, MetricInfo]) -> dict[str, str | None]:
    """Default encodings: colour = primary accuracy-like metric; size = an efficiency metric.

    The efficiency metric is the first of :data:`EFFICIENCY_METRICS` whose values are not all
    equal (a metric every model shares, like the dense size of pruned models, answers nothing)
    among those logged on the most models, else the first one logged, else another metric. Scatter: x = that metric, y = the colour.
    """
    names = forest.metric_names()
    primary = [n for n in names if info_for(infos, n).primary]
    accuracy_like = [n for n in names if any(w in n.lower() for w in ("acc", "f1", "score"))]
    color = (primary or accuracy_like or [n for n in names if info_for(infos, n).higher_is_better]
             or names or [None])[0]
    present = [n for n in EFFICIENCY_METRICS if n in names]
    moving = [n for n in present if varies(forest, n)]
    if moving:  # of those logged on the most models (a model without x leaves the scatterplot)
        most = max(coverage(forest, n) for n in moving)
        size: str | None = next(n for n in moving if coverage(forest, n) == most)
    else:
        size = present[0] if present else None
    if size is None:
        others = [n for n in names if n != color]
        size = next((n for n in others if varies(forest, n)), others[0] if others else color)
    return {"color": color, "size": size, "x": size, "y": color}
