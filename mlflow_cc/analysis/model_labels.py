"""Short, pairwise distinct titles for compared models: what tells them apart, in words (pure).

:func:`distinct_labels` titles every model of a comparison (the base and the selection) for a
table column or a dropdown: ``prune 90%`` next to ``prune 95%``, ``90% magnitude → finetune``
next to ``90% gradient → finetune``. How:

1. Each model's path from its root; the part every compared model shares (down to their closest
   common ancestor) is dropped. What is left is the path from that ancestor, one step a model.
2. For each operation, only its *telling* parameters are written: those with more than one value
   among the steps of that operation left on the paths (the parameter variables of
   :mod:`mlflow_cc.analysis.selection`, per operation); a parameter present on some steps only
   counts when the values alone do not tell the steps apart. ``finetune`` with equal settings
   everywhere is just ``finetune``.
3. Steps are joined with `` → ``. A title longer than :data:`MAX_CHARS` is written tighter, one
   level at a time, until it fits: ancestors' operation names left out where their parameters
   say enough (``90% magnitude → finetune``), then every step's, then short words
   (``90% mag → ft``), then only the last step after ``… → ``, then cut with ``…``.
4. A model whose path is empty (the common ancestor itself) is titled by its own operation in
   full words, or by its run name when it is a root.
5. Titles still equal (the same recipe logged twice, or cut alike) get the run names when those
   are distinct and short, else `` #2``, `` #3``… in tree order. Titles are then pairwise distinct.

Costs: O(m * d) for m models at depth d, plus the tightening (a few passes over the titles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlflow_cc.read.lineage import Forest
from mlflow_cc.read.op_words import operation_text

#: Longest title (characters) that fits a comparison column.
MAX_CHARS = 26
ARROW = " → "
_MISSING = ("\x00missing",)


def distinct_labels(forest: Forest, run_ids: Iterable[str], base: str | None = None,
                    max_chars: int = MAX_CHARS) -> dict[str, str]:
    """run id -> a short title, pairwise distinct, for the models ``run_ids`` (and ``base``).

    Ids not in ``forest`` are titled by their first 8 characters.
    """
    ids = list(dict.fromkeys([*([base] if base else []), *run_ids]))
    known = [r for r in ids if r in forest.nodes]
    paths = {r: [*reversed(forest.ancestors(r)), r] for r in known}
    shared = _shared_prefix(list(paths.values()))
    rest = {r: p[shared:] for r, p in paths.items()}
    telling = _telling_keys(forest, {n for p in rest.values() for n in p})
    labels: dict[str, str] = {}
    for r in known:
        labels[r] = _fit(forest, rest[r], telling, max_chars) if rest[r] else _own(forest, r, max_chars)
    for r in ids:
        if r not in labels:
            labels[r] = r[:8]
    return _dedupe(forest, ids, labels, max_chars)


def _shared_prefix(paths: list[list[str]]) -> int:
    if not paths:
        return 0
    n = min(len(p) for p in paths)
    k = 0
    while k < n and all(p[k] == paths[0][k] for p in paths):
        k += 1
    return k


def _typed(v: Any) -> Any:
    return (type(v).__name__, v) if isinstance(v, bool) else ("", v if isinstance(v, (int, float, str)) or v is None
                                                             else repr(v))


def _telling_keys(forest: Forest, nodes: set[str]) -> dict[str, set[str]]:
    """Operation -> the parameters that tell its steps (among ``nodes``) apart."""
    by_op: dict[str, list[dict[str, Any]]] = {}
    for n in nodes:
        node = forest.nodes[n]
        if node.operation:
            by_op.setdefault(node.operation, []).append(node.op_params)
    out: dict[str, set[str]] = {}
    for op, params in by_op.items():
        keys = {k for p in params for k in p}
        values = {k: {_typed(p[k]) for p in params if k in p} for k in keys}
        telling = {k for k in keys if len(values[k]) > 1}

        full = _distinct_rows(params, keys)
        if _distinct_rows(params, telling) < full:  # presence alone tells some apart: add those keys too
            for k in sorted(keys - telling):
                telling.add(k)
                if _distinct_rows(params, telling) == full:
                    break
        out[op] = telling
    return out


def _distinct_rows(params: list[dict[str, Any]], keys: set[str]) -> int:
    return len({tuple(_typed(p.get(k, _MISSING)) for k in sorted(keys)) for p in params})


def _step(forest: Forest, run_id: str, telling: Mapping[str, set[str]], *, with_op: bool, short: bool) -> str:
    node = forest.nodes[run_id]
    if not node.operation:
        name = node.name
        return name if not short or len(name) <= 12 else name[:11] + "…"
    keys = telling.get(node.operation, set())
    params = {k: v for k, v in node.op_params.items() if k in keys}
    return operation_text(node.operation, params, explicit=keys, short=short, with_op=with_op)


def _fit(forest: Forest, path: list[str], telling: Mapping[str, set[str]], max_chars: int) -> str:
    """The path's title at the first level of tightness that fits ``max_chars``."""
    *before, last = path
    levels = [
        (True, True, False),  # ancestors with op names, full words
        (False, True, False),  # ancestors without op names
        (False, False, False),  # no op names where parameters say enough
        (False, False, True),  # short words
    ]
    text = ""
    for anc_op, last_op, short in levels:
        parts = [_step(forest, n, telling, with_op=anc_op, short=short) for n in before]
        parts.append(_step(forest, last, telling, with_op=last_op, short=short))
        text = ARROW.join(parts)
        if len(text) <= max_chars:
            return text
    if before:
        tail = "…" + ARROW + _step(forest, last, telling, with_op=True, short=True)
        if len(tail) <= max_chars:
            return tail
    return _cut(text, max_chars)


def _own(forest: Forest, run_id: str, max_chars: int) -> str:
    """The common ancestor's own title: its operation in full words, or a root's run name."""
    node = forest.nodes[run_id]
    if not node.operation:
        return _cut(node.name, max_chars)
    for short, with_op in ((False, True), (False, False), (True, True), (True, False)):
        text = operation_text(node.operation, node.op_params, short=short, with_op=with_op)
        if len(text) <= max_chars:
            return text
    return _cut(text, max_chars)


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars - 1].rstrip() + "…"


def _dedupe(forest: Forest, ids: list[str], labels: dict[str, str], max_chars: int) -> dict[str, str]:
    """Equal titles: the run names when they are distinct and fit, else numbered ``#2``, ``#3``."""
    order = {n.run_id: i for i, n in enumerate(forest.walk())}
    groups: dict[str, list[str]] = {}
    for r in ids:
        groups.setdefault(labels[r], []).append(r)
    taken = set(labels.values())
    for text, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: (order.get(r, len(order)), r))
        names = [forest.nodes[r].name if r in forest.nodes else r for r in members]
        if len(set(names)) == len(names) and all(len(n) <= max_chars and n not in taken for n in names):
            for r, n in zip(members, names):
                labels[r] = n
            taken.update(names)
            continue
        for k, r in enumerate(members[1:], start=2):
            j = k
            while True:
                suffix = f" #{j}"
                candidate = _cut(text, max_chars - len(suffix)) + suffix
                if candidate not in taken:
                    break
                j += 1
            labels[r] = candidate
            taken.add(candidate)
    return labels
