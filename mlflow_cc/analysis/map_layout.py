"""Server-side layout of the Model Map (pure, no Dash, near-linear time).

Rows follow a dendrogram: every visible leaf takes a row, a parent sits on the row of
its first child (so a chain of operations reads as one horizontal line, as in the
paper's map). Columns are either aligned by operation (the same operation name
shares a column; the second ``prune`` on one path gets a column of its own,
``prune 2``), by step (depth), or by time (``time``/``time_end``: when each run started or
ended, see :mod:`mlflow_cc.analysis.time_layout`).

Large forests stay readable by collapsing subtrees into one summarised node
instead of shrinking everything: a breadth-first pass expands nodes while the
number of visible models stays within ``budget``; the user can expand or collapse
any node and focus one subtree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from mlflow_cc.analysis.time_layout import TIME_MODES, TimeAxis, time_positions
from mlflow_cc.read.lineage import Forest

Mode = Literal["operation", "step", "time", "time_end"]

#: Visible models shown before subtrees start collapsing.
DEFAULT_BUDGET = 150
BASE_COLUMN = "base"


@dataclass(frozen=True)
class Column:
    """One map column: its x position and header (operation name, ``prune 2``, ``step 3``)."""

    index: int
    label: str


@dataclass
class Summary:
    """What a collapsed node hides: ``count`` models below it, best value of ``metric``."""

    count: int
    best: float | None = None
    best_id: str | None = None


@dataclass
class MapLayout:
    """Positions of the visible models and what they hide.

    ``x`` is a column index (by time: map units, see ``time``), ``y`` a row index (0 at the top).
    """

    mode: Mode
    x: dict[str, float]
    y: dict[str, float]
    columns: list[Column]
    #: Parent edges between visible models: (parent, child).
    edges: list[tuple[str, str]]
    #: Extra lineage inputs between visible models: (input, model, role).
    extra_edges: list[tuple[str, str, str]]
    collapsed: dict[str, Summary] = field(default_factory=dict)
    focus: str | None = None
    rows: int = 0
    #: By time: how x maps to time (None in the other layouts).
    time: TimeAxis | None = None

    @property
    def visible(self) -> list[str]:
        return list(self.x)

    def column_members(self, index: int) -> list[str]:
        """Visible models in column ``index``."""
        return [rid for rid, x in self.x.items() if x == index]


def param_sort_key(params: dict[str, Any]) -> tuple[Any, ...]:
    """Order siblings by parameter values: numbers numerically, the rest as text."""
    out: list[Any] = []
    for name in sorted(params):
        v = params[name]
        if isinstance(v, bool) or v is None:
            out.append((name, 1, str(v)))
        elif isinstance(v, (int, float)):
            out.append((name, 0, float(v)))
        else:
            out.append((name, 1, str(v)))
    return tuple(out)


def operation_keys(forest: Forest) -> dict[str, str]:
    """Column key of every model: its operation name, numbered when repeated on its path."""
    keys: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for root in forest.roots:
        keys[root] = BASE_COLUMN
        counts[root] = {}
        stack = [root]
        while stack:
            rid = stack.pop()
            for child in forest.nodes[rid].children:
                op = forest.nodes[child].operation or "derive"
                c = dict(counts[rid])
                c[op] = c.get(op, 0) + 1
                counts[child] = c
                keys[child] = op if c[op] == 1 else f"{op} {c[op]}"
                stack.append(child)
    return keys


def order_columns(forest: Forest, keys: dict[str, str]) -> list[str]:
    """Column keys left to right, so that parents' columns come before children's.

    A topological sort of the key graph (parent key -> child key); ties go to the key
    met at the smallest mean depth. Conflicting orders (prune before quantize on one
    path, after it on another) are broken at the key with the smallest mean depth.
    """
    succ: dict[str, set[str]] = {}
    indeg: dict[str, int] = {}
    depth_sum: dict[str, float] = {}
    depth_n: dict[str, int] = {}
    for n in forest.nodes.values():
        k = keys.get(n.run_id)
        if k is None:
            continue
        depth_sum[k] = depth_sum.get(k, 0.0) + n.depth
        depth_n[k] = depth_n.get(k, 0) + 1
        succ.setdefault(k, set())
        indeg.setdefault(k, 0)
        pk = keys.get(n.parent_id) if n.parent_id is not None else None
        if pk is not None and pk != k and k not in succ.setdefault(pk, set()):
            succ[pk].add(k)
            indeg[k] = indeg.get(k, 0) + 1

    def mean_depth(k: str) -> tuple[float, str]:
        return (0.0 if k == BASE_COLUMN else depth_sum[k] / depth_n[k], k)

    order: list[str] = []
    remaining = set(indeg)
    while remaining:
        ready = [k for k in remaining if indeg[k] == 0]
        # A cycle: release the shallowest key as if its incoming edges did not exist.
        k = min(ready or remaining, key=mean_depth)
        order.append(k)
        remaining.discard(k)
        for s in succ.get(k, ()):
            if s in remaining:
                indeg[s] -= 1
    return order


def _place_in_columns(forest: Forest, visible: list[str], keys: dict[str, str],
                      order: list[str]) -> tuple[dict[str, int], list[str]]:
    """Column of each visible model, keeping every child right of its parent.

    Where trees disagree on the order of two operations (prune then quantize here,
    quantize then prune there) the preferred ``order`` cannot hold for both; the
    late-comer goes to the next column of the same operation that lies right of its
    parent, or to a new one at the right end. ``visible`` is in breadth-first order.
    """
    order = list(order)
    index = {k: i for i, k in enumerate(order)}
    xcol: dict[str, int] = {}
    nodes = forest.nodes
    for rid in visible:
        key = keys[rid]
        parent = nodes[rid].parent_id
        pcol = xcol.get(parent, -1) if parent is not None else -1
        if index[key] > pcol:
            xcol[rid] = index[key]
            continue
        op = nodes[rid].operation or "derive"
        n = 2
        while True:
            alt = f"{op} {n}"
            if alt not in index:
                index[alt] = len(order)
                order.append(alt)
            if index[alt] > pcol:
                break
            n += 1
        xcol[rid] = index[alt]
    return xcol, order


def _child_order(forest: Forest, rid: str, col: dict[str, int]) -> list[str]:
    def key(c: str) -> tuple[Any, ...]:
        n = forest.nodes[c]
        return (col.get(c, 0), n.operation or "", param_sort_key(n.op_params), n.start_time, c)
    return sorted(forest.nodes[rid].children, key=key)


def subtree_sizes(forest: Forest, roots: Iterable[str] | None = None) -> dict[str, int]:
    """Number of descendants of each model (iterative post-order)."""
    size: dict[str, int] = {}
    for root in (forest.roots if roots is None else roots):
        order: list[str] = []
        stack = [root]
        while stack:
            rid = stack.pop()
            order.append(rid)
            stack.extend(forest.nodes[rid].children)
        for rid in reversed(order):
            size[rid] = sum(size[c] + 1 for c in forest.nodes[rid].children)
    return size


def layout_forest(forest: Forest, mode: Mode = "operation", *, budget: int = DEFAULT_BUDGET,
                  expand: Iterable[str] = (), collapse: Iterable[str] = (),
                  reveal: Iterable[str] = (), focus: str | None = None,
                  metric: str | None = None, higher_is_better: bool = True,
                  now_ms: float | None = None) -> MapLayout:
    """Lay out ``forest`` (or the subtree under ``focus``) for the Model Map.

    ``expand``/``collapse`` override the automatic collapsing; ``reveal`` lists models
    that must be visible (their ancestors are expanded). Collapsed nodes get a
    :class:`Summary` (descendant count and best ``metric``). By time, ``now_ms`` places runs in
    progress. Runs in O(n log n).
    """
    nodes = forest.nodes
    roots = [focus] if focus is not None and focus in nodes else list(forest.roots)
    focus = roots[0] if focus is not None and focus in nodes else None
    expand_set, collapse_set = set(expand), set(collapse)
    for rid in reveal:
        if rid in nodes:
            expand_set.update(a for a in forest.ancestors(rid))
            collapse_set.difference_update(forest.ancestors(rid))

    # Breadth-first: expand while the visible count fits the budget.
    visible: list[str] = list(roots)
    count = len(roots)
    expanded: set[str] = set()
    collapsed_ids: list[str] = []
    queue = deque(roots)
    while queue:
        rid = queue.popleft()
        kids = nodes[rid].children
        if not kids:
            continue
        if rid in collapse_set:
            collapsed_ids.append(rid)
        elif rid in expand_set or count + len(kids) <= budget:
            expanded.add(rid)
            count += len(kids)
            visible.extend(kids)
            queue.extend(kids)
        else:
            collapsed_ids.append(rid)

    time_axis: TimeAxis | None = None
    if mode in TIME_MODES:
        xcol, time_axis = time_positions(forest, visible, TIME_MODES[mode], now_ms)
        columns: list[Column] = []
    elif mode == "step":
        depth0 = nodes[roots[0]].depth if focus else 0
        xcol = {rid: nodes[rid].depth - depth0 for rid in visible}
        ncols = max(xcol.values(), default=0) + 1
        columns = [Column(i, BASE_COLUMN if i == 0 and not focus else f"step {i + depth0}")
                   for i in range(ncols)]
    else:
        keys = operation_keys(forest)
        order = order_columns(forest, {rid: keys[rid] for rid in visible})
        if focus and nodes[focus].operation:
            # the focused model's own column goes first whatever its key
            order.remove(keys[focus])
            order.insert(0, keys[focus])
        xcol, order = _place_in_columns(forest, visible, keys, order)
        columns = [Column(i, k) for i, k in enumerate(order)]

    # Rows: depth-first over visible children in parameter order; a parent takes its
    # first child's row.
    y: dict[str, float] = {}
    row = 0
    for root in roots:
        post: list[tuple[str, bool]] = [(root, False)]
        while post:
            rid, done = post.pop()
            kids = _child_order(forest, rid, xcol) if rid in expanded else []
            if done:
                y[rid] = y[kids[0]]
                continue
            if not kids:
                y[rid] = float(row)
                row += 1
                continue
            post.append((rid, True))
            post.extend((c, False) for c in reversed(kids))

    edges = [(nodes[rid].parent_id, rid) for rid in visible
             if nodes[rid].parent_id is not None and nodes[rid].parent_id in y and rid != focus]
    extra = [(inp["run_id"], rid, inp.get("role", "input")) for rid in visible
             for inp in nodes[rid].inputs if inp.get("run_id") in y]

    summaries: dict[str, Summary] = {}
    if collapsed_ids:
        sizes = subtree_sizes(forest, collapsed_ids)
        for rid in collapsed_ids:
            summaries[rid] = _summarise(forest, rid, sizes[rid], metric, higher_is_better)
    return MapLayout(mode=mode, x={rid: xcol[rid] for rid in y}, y=y, columns=columns,
                     edges=[(p, c) for p, c in edges if p is not None], extra_edges=extra,
                     collapsed=summaries, focus=focus, rows=row, time=time_axis)


def _summarise(forest: Forest, rid: str, count: int, metric: str | None,
               higher_is_better: bool) -> Summary:
    best: float | None = None
    best_id: str | None = None
    if metric:
        for d in forest.descendants(rid):
            v = forest.nodes[d].metrics.get(metric)
            if v is None:
                continue
            if best is None or (v > best if higher_is_better else v < best):
                best, best_id = v, d
    return Summary(count=count, best=best, best_id=best_id)


def hidden_under(forest: Forest, layout: MapLayout) -> dict[str, str]:
    """Each hidden model -> the collapsed visible node that stands for it."""
    out: dict[str, str] = {}
    for rid in layout.collapsed:
        for d in forest.descendants(rid):
            out[d] = rid
    return out

