"""The Compression Overview's view state and how user actions change it (pure, no Dash).

The state is a plain JSON dict (it lives in a ``dcc.Store`` and in the URL):
``experiment`` (id), ``layout`` (one of :data:`LAYOUTS`), ``color``/``size``/``x``/``y``
(metric names), ``sel`` (selected run ids), ``filters`` ({metric: [lo, hi] or None}),
``focus`` (run id or None), ``expand``/``collapse`` (run ids overriding automatic
collapsing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode

from mlflow_cc.analysis.whatif import outside_budgets
from mlflow_cc.read.lineage import Forest

#: The Performance Comparison's keys (dash_app/views/comparison.py): the app tab, the base, its
#: own tab; Behaviours rows, metric, relative, sort, filters, drill, flagged-only; Layers show,
#: sort, name pattern, tree/list view; and the expanded modules.
CMP_TEXT_KEYS = ("tab", "base", "ctab", "rows", "metric", "rel", "bsort", "bfilter", "drill", "flagged",
                 "lshow", "lsort", "lpat", "lview",
                 "sig", "alpha")  # Behaviours: significant rows only, the level (views/behaviours_significance)
CMP_LIST_KEYS = ("open",)
LIST_KEYS = ("sel", "expand", "collapse", *CMP_LIST_KEYS)
#: Map layouts: columns by operation, by step; x by start time, by end time (analysis/time_layout.py).
LAYOUTS = ("operation", "step", "time", "time_end")
#: The What-if panel's budget and quality metrics (dash_app/views/whatif.py).
WHATIF_KEYS = ("weff", "wq")
TEXT_KEYS = ("experiment", "layout", "color", "size", "x", "y", "focus", *CMP_TEXT_KEYS, *WHATIF_KEYS)


def empty_state() -> dict[str, Any]:
    return {"ready": False, "experiment": None, "layout": "operation", "color": None, "size": None,
            "x": None, "y": None, "sel": [], "filters": {}, "focus": None, "expand": [],
            "collapse": []}


#: The keys the Compression Overview draws from (other views keep theirs in the same state).
OVERVIEW_KEYS = ("ready", "experiment", "layout", "color", "size", "x", "y", "sel", "filters", "focus",
                 "expand", "collapse")


def overview_part(state: dict[str, Any]) -> dict[str, Any]:
    """The Compression Overview's keys of ``state``."""
    return {k: state.get(k) for k in OVERVIEW_KEYS}


def figure_part(state: dict[str, Any] | None) -> dict[str, Any]:
    """The keys the map and scatterplot figures are drawn from, the selection aside.

    The browser shows a selection change itself (``assets/overview.js`` restyles the rings);
    the figures are redrawn only when this part (or the map's layout) changes.
    """
    return {k: (state or {}).get(k) for k in OVERVIEW_KEYS if k != "sel"}


def parse_query(search: str | None) -> dict[str, Any]:
    """Read the state fields present in a URL query (``?experiment=..&sel=a,b&f=acc:0.9:1``).

    ``select`` (the link MLflow run descriptions carry) is read like ``sel``.
    Unknown or malformed parts are ignored.
    """
    q = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
    out: dict[str, Any] = {}
    for key in TEXT_KEYS:
        if q.get(key):
            out[key] = q[key][-1]
    if out.get("layout") not in (None, *LAYOUTS):
        del out["layout"]
    for key in LIST_KEYS:
        vals = [v for raw in q.get(key, []) for v in raw.split(",") if v]
        if key == "sel":
            vals += [v for raw in q.get("select", []) for v in raw.split(",") if v]
        if vals:
            out[key] = list(dict.fromkeys(vals))
    filters: dict[str, list[float] | None] = {}
    for raw in q.get("f", []):
        name, _, rng = raw.rpartition(":")  # metric:lo:hi, or metric: for an unset budget
        name2, _, lo = name.rpartition(":")
        try:
            if name2:
                filters[name2] = [float(lo), float(rng)]
            elif name:
                filters[name] = None
        except ValueError:
            continue
    if filters:
        out["filters"] = filters
    return out


def to_query(state: dict[str, Any]) -> str:
    """The URL query (with ``?``) that :func:`parse_query` turns back into ``state``."""
    pairs: list[tuple[str, str]] = []
    for key in TEXT_KEYS:
        if state.get(key):
            pairs.append((key, str(state[key])))
    for key in LIST_KEYS:
        if state.get(key):
            pairs.append((key, ",".join(state[key])))
    for name, rng in (state.get("filters") or {}).items():
        pairs.append(("f", f"{name}:{rng[0]!r}:{rng[1]!r}" if rng else f"{name}:"))
    return "?" + urlencode(pairs, safe=",:")


def excluded_ids(forest: Forest, filters: dict[str, Any] | None) -> set[str]:
    """Models outside a budget: a metric out of its range, or missing a budgeted metric."""
    return outside_budgets(forest, filters)


def pick(current: Iterable[str], picked: Iterable[str], additive: bool, excluded: set[str],
         forest: Forest) -> list[str]:
    """New selection after a click or box: replace, or add (shift) — toggling a single click."""
    picked_ok = [r for r in dict.fromkeys(picked) if r in forest.nodes and r not in excluded]
    if not additive:
        return picked_ok
    cur = list(current)
    if len(picked_ok) == 1 and picked_ok[0] in cur:
        return [r for r in cur if r != picked_ok[0]]
    return list(dict.fromkeys(cur + picked_ok))


def grow(forest: Forest, selected: Iterable[str], how: str, excluded: set[str]) -> list[str]:
    """Add the parents, children, ancestors or descendants of the selection."""
    sel = [r for r in selected if r in forest.nodes]
    extra: list[str] = []
    for rid in sel:
        node = forest.nodes[rid]
        if how == "parents":
            extra += [node.parent_id] if node.parent_id else []
        elif how == "children":
            extra += node.children
        elif how == "ancestors":
            extra += forest.ancestors(rid)
        elif how == "descendants":
            extra += forest.descendants(rid)
    return list(dict.fromkeys(sel + [r for r in extra if r not in excluded]))


def points_ids(event: dict[str, Any] | None) -> list[str]:
    """The ``customdata`` strings of the points in a Plotly click/selection event."""
    if not event:
        return []
    out = []
    for p in event.get("points", []):
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if isinstance(cd, str):
            out.append(cd)
    return out
