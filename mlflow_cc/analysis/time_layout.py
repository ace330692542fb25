"""The Model Map laid out *by time* (pure, no Dash): x is when a run started, or when it ended.

:func:`mlflow_cc.analysis.map_layout.layout_forest` keeps its rows (a dendrogram: a parent on
its first child's row, siblings in time order), its collapsing and focus; only x changes. Times
are mapped linearly onto :data:`TIME_UNITS` map units (the width a handful of operation columns
takes) from the earliest to the latest visible time, so a figure draws edges as in the other
layouts and puts a date axis over them with :meth:`TimeAxis.to_ms`.

* A run still in progress has no end time: by end time it sits at ``now_ms`` (the drawing's
  time), and it is listed in :attr:`TimeAxis.running` so a figure can show it as open-ended.
  When now lies far after every model (a run left RUNNING for weeks), now is drawn just right
  of the latest model, off the scale (:attr:`TimeAxis.now_on_scale` is False).
* A run without a recorded start (``start_time`` 0) sits at the earliest known time and is
  listed in :attr:`TimeAxis.unknown`.
* :func:`dead_ends`: the leaves nothing was derived from although the team went on deriving
  models after they ended: the tips of abandoned branches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlflow_cc.read.lineage import Forest, ModelNode

#: Layout mode -> which time of a run gives its x.
TIME_MODES = {"time": "start", "time_end": "end"}
#: Width of the time axis in map units (a map column is one unit).
TIME_UNITS = 8.0
#: The smallest time span drawn (ms): models logged within a second still spread over the axis.
MIN_SPAN_MS = 1000.0
#: Now stays on the time scale while it lies within this fraction of the models' span after them.
NOW_GAP = 0.25
#: Where now goes when it is off the scale: this many map units right of the latest model.
OFF_SCALE = 0.8


@dataclass(frozen=True)
class TimeAxis:
    """How map x (units) maps to time, and what the time layout found."""

    which: str  # "start" or "end"
    origin_ms: float
    ms_per_unit: float
    #: Visible models still in progress (no end time).
    running: tuple[str, ...] = ()
    #: Visible models with no recorded start time.
    unknown: tuple[str, ...] = ()
    #: Visible leaves of abandoned branches (see :func:`dead_ends`).
    dead_ends: tuple[str, ...] = ()
    #: The time of drawing, when it took part (a run in progress was visible).
    now_ms: float | None = None
    #: Where now is drawn (map units), and whether that is its place on the time scale.
    now_x: float | None = None
    now_on_scale: bool = False

    def to_ms(self, x: float) -> float:
        return self.origin_ms + x * self.ms_per_unit

    def to_x(self, ms: float) -> float:
        return (ms - self.origin_ms) / self.ms_per_unit


def run_time(node: ModelNode, which: str, now_ms: float | None) -> float | None:
    """A run's time in ms: its start, or its end (a run in progress: ``now_ms``); None if unknown."""
    start = float(node.start_time) if node.start_time and node.start_time > 0 else None
    if which == "start":
        return start
    if node.is_running:  # not ended yet, whatever end time an earlier attempt left
        return now_ms if now_ms is not None else start
    if node.end_time:
        return float(node.end_time)
    return start  # ended without an end time (killed): its start is all we know


def dead_ends(forest: Forest) -> set[str]:
    """Leaves (not running) that ended before the experiment's latest model started.

    Nothing was derived from them, though the team went on deriving models afterwards:
    the tips of abandoned branches.
    """
    latest = max((n.start_time for n in forest.nodes.values() if n.start_time), default=0)
    out: set[str] = set()
    for rid, n in forest.nodes.items():
        if n.children or n.is_running or n.external:
            continue
        ended = n.end_time or n.start_time
        if ended and ended < latest:
            out.add(rid)
    return out


def time_positions(forest: Forest, visible: Iterable[str], which: str,
                   now_ms: float | None = None) -> tuple[dict[str, float], TimeAxis]:
    """x (map units) of each visible model from its start or end time, and the axis that maps back.

    A visible run in progress reaches to now: on the time scale when now is near (within
    :data:`NOW_GAP` of the span), else just right of the latest model (``now_x``, off scale), so one
    forgotten RUNNING run does not squeeze months of work into a corner.
    """
    ids = list(visible)
    nodes = forest.nodes
    running = tuple(r for r in ids if nodes[r].is_running)
    use_now = now_ms if running else None
    times = {r: run_time(nodes[r], which, None) for r in ids}  # in progress, by end: its start for now
    at_now = set(running) if which == "end" and use_now is not None else set()
    known = [t for r, t in times.items() if t is not None and r not in at_now]
    lo, hi = min(known, default=use_now or 0.0), max(known, default=use_now or 0.0)
    on_scale = use_now is not None and use_now - hi <= max(hi - lo, MIN_SPAN_MS) * NOW_GAP
    if on_scale:
        hi = max(hi, use_now or hi)
    span = max(hi - lo, MIN_SPAN_MS)
    scale = span / TIME_UNITS
    now_x = None if use_now is None else ((use_now - lo) / scale if on_scale else TIME_UNITS + OFF_SCALE)
    unknown = tuple(r for r, t in times.items() if t is None)
    x = {r: ((t if t is not None else lo) - lo) / scale for r, t in times.items()}
    if now_x is not None:
        x.update({r: now_x for r in at_now})
    ends = dead_ends(forest)
    axis = TimeAxis(which=which, origin_ms=lo, ms_per_unit=scale, running=running, unknown=unknown,
                    dead_ends=tuple(r for r in ids if r in ends), now_ms=use_now, now_x=now_x,
                    now_on_scale=on_scale)
    return x, axis
