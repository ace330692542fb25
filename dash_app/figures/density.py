"""The scatterplot's density layer for large experiments (pure).

Above :data:`DENSE_MIN` models one SVG marker per model costs the browser seconds (measured:
0.4-0.9 s at 5,000 models, growing linearly), so the models are binned on a grid instead and
drawn as one heatmap: each cell is coloured by the mean colour metric of its models, its tooltip
gives their count and first names. Every model stays reachable: a click on a cell or a box
selects the models inside (resolved here, on the server, from the same grid), finding a model by
name selects it, and the selection rings are patched into the figure by the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from dash_app.figures.encoding import COLORSCALE, Encoding, escape
from mlflow_cc.read.lineage import Forest

#: More included models than this: the scatterplot draws the density layer.
DENSE_MIN = 2000
#: Grid cells across and up.
BINS = (96, 64)
#: Names listed in a cell's tooltip.
NAMES_IN_TIP = 3


@dataclass(frozen=True)
class Grid:
    """Cell edges of one axis, in the axis's own units (log10 on a log axis)."""

    edges: np.ndarray
    log: bool

    @classmethod
    def over(cls, values: np.ndarray, n: int, log: bool) -> Grid:
        v = np.log10(values[values > 0]) if log else values[np.isfinite(values)]
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return cls(np.linspace(lo, hi, n + 1), log)

    def index(self, values: np.ndarray) -> np.ndarray:
        """Cell index of each value (-1: outside, or not positive on a log axis)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(values) if self.log else values
        i = np.searchsorted(self.edges, v, side="right") - 1
        i[v == self.edges[-1]] = len(self.edges) - 2
        i[~np.isfinite(v) | (i < 0) | (i >= len(self.edges) - 1)] = -1
        return i

    def centers(self) -> np.ndarray:
        c = (self.edges[:-1] + self.edges[1:]) / 2
        return 10 ** c if self.log else c


def is_dense(n_models: int) -> bool:
    return n_models > DENSE_MIN


def grids(xs: np.ndarray, ys: np.ndarray, xlog: bool, ylog: bool) -> tuple[Grid, Grid]:
    return Grid.over(xs, BINS[0], xlog), Grid.over(ys, BINS[1], ylog)


def density_trace(forest: Forest, enc: Encoding, ids: Sequence[str], xs: np.ndarray, ys: np.ndarray,
                  xlog: bool, ylog: bool) -> go.Heatmap:
    """One heatmap (named "density") of ``ids`` at (``xs``, ``ys``) on the grid of :func:`grids`."""
    gx, gy = grids(xs, ys, xlog, ylog)
    ix, iy = gx.index(xs), gy.index(ys)
    nx, ny = len(gx.edges) - 1, len(gy.edges) - 1
    inside = (ix >= 0) & (iy >= 0)
    cell = np.where(inside, iy * nx + ix, -1)
    ts = np.array([np.nan if (t := enc.color_t(forest.nodes[r])) is None else t for r in ids], dtype=float)
    known = inside & ~np.isnan(ts)
    count = np.bincount(cell[inside], minlength=nx * ny)
    tsum = np.bincount(cell[known], weights=ts[known], minlength=nx * ny)
    tcount = np.bincount(cell[known], minlength=nx * ny)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(tcount > 0, tsum / np.maximum(tcount, 1), 0.5)
    z = np.where(count > 0, z, np.nan).reshape(ny, nx)
    # the first few models of each cell, in the order given: a stable sort by cell
    order = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[order], np.arange(nx * ny))
    tips = np.full(nx * ny, "", dtype=object)
    for c in np.flatnonzero(count):
        k = int(count[c])
        first = [escape(forest.nodes[ids[i]].name) for i in order[starts[c]:starts[c] + min(k, NAMES_IN_TIP)]]
        tips[c] = (f"<b>{k} model{'s' if k != 1 else ''}</b><br>" + "<br>".join(first)
                   + ("<br>…" if k > NAMES_IN_TIP else "") + "<br><i>click or box to select</i>")
    tips = tips.reshape(ny, nx)
    return go.Heatmap(_validate=False, 
        x=gx.centers(), y=gy.centers(), z=z, zmin=0, zmax=1, colorscale=COLORSCALE, showscale=False,
        hoverongaps=False, text=tips, hovertemplate="%{text}<extra></extra>", name="density",
        xgap=0, ygap=0)


def ids_in_box(forest: Forest, ids: Sequence[str], x: str, y: str, xrange: Sequence[float],
               yrange: Sequence[float]) -> list[str]:
    """``ids`` whose (``x``, ``y``) metrics lie in the box (ranges in data units)."""
    xs = np.array([forest.nodes[r].metrics[x] for r in ids], dtype=float)
    ys = np.array([forest.nodes[r].metrics[y] for r in ids], dtype=float)
    inside = _between(xs, *xrange[:2]) & _between(ys, *yrange[:2])
    return [r for r, keep in zip(ids, inside) if keep]


def ids_in_cell(forest: Forest, ids: Sequence[str], x: str, y: str, xlog: bool, ylog: bool,
                cx: float, cy: float) -> list[str]:
    """``ids`` in the grid cell whose centre is (``cx``, ``cy``) (the grid of the drawn figure)."""
    xs = np.array([forest.nodes[r].metrics[x] for r in ids], dtype=float)
    ys = np.array([forest.nodes[r].metrics[y] for r in ids], dtype=float)
    gx, gy = grids(xs, ys, xlog, ylog)
    ix, iy = gx.index(xs), gy.index(ys)
    ci, cj = gx.index(np.array([cx], dtype=float))[0], gy.index(np.array([cy], dtype=float))[0]
    return [r for r, i, j in zip(ids, ix, iy) if i == ci and j == cj and i >= 0]


def _between(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo, hi = min(lo, hi), max(lo, hi)
    return (values >= lo) & (values <= hi)


def axis_is_log(axis: Mapping[str, object]) -> bool:
    return axis.get("type") == "log"
