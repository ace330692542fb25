"""A forest updated in proportion to what changed, and the warnings every forest ends with.

An incremental refresh of 50,000 runs usually brings a few new runs under parents already
read, or a running run that finished. :func:`update_forest` makes the next forest from
the last one without relinking every node: the node dict is copied (references), the
changed nodes and the parents that gain a child are copied, new children are inserted in
start order, and the warnings are reassembled. The previous forest is left untouched
(other threads may still be walking it). Anything that could move a subtree (a changed
declared parent or start time, a run that other runs named as their missing parent, a
parent outside the forest, a cycle) returns None: the caller rebuilds the whole forest,
so both ways give the same forest.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping, Sequence

from mlflow_cc.read.lineage import (
    FAILED_STATUSES,
    Forest,
    LineageWarning,
    ModelNode,
    copy_node,
    failed_warning,
    order_key,
)

#: Warnings about links, made once per full build (kept by an update, which never changes links).
LINK_KINDS = frozenset({"external", "orphan", "deleted_parent", "cycle"})


def node_warnings(nodes: Iterable[ModelNode], metadata_problems: Sequence[str]) -> list[LineageWarning]:
    """The warnings after the forest's own: unreadable experiment metadata, then unreadable
    lineage tags (in ``nodes`` order)."""
    return _metadata_warnings(metadata_problems) + [_bad_tag(n) for n in nodes if "_problems" in n.tags]


def _metadata_warnings(problems: Sequence[str]) -> list[LineageWarning]:
    return [LineageWarning("metadata", None, p) for p in problems]


def _bad_tag(node: ModelNode) -> LineageWarning:
    return LineageWarning("bad_tag", node.run_id, f"{node.name}: {node.tags['_problems']}")


def update_forest(old: Forest, changed: Sequence[ModelNode], missing: Mapping[str, str],
                  metadata_problems: Sequence[str]) -> Forest | None:
    """``old`` with the ``changed`` runs (new or refetched) applied; None when only a full build may.

    ``missing``: the declared parents the last full build did not find (a run arriving
    under such an id relinks its children). The node order is the full build's: runs of the
    experiment as read, then the external parents.
    """
    nodes = old.nodes
    if any(w.kind == "cycle" for w in old.warnings):
        return None
    flagged = {w.run_id for w in old.warnings if w.kind in LINK_KINDS}
    new = {n.run_id: n for n in changed if n.run_id not in nodes}
    for n in changed:
        pid, prev = n.declared_parent_id, nodes.get(n.run_id)
        if pid == n.run_id or (pid and pid not in nodes and pid not in new):
            return None
        if prev is None:
            if n.run_id in missing:
                return None
        elif (prev.external or prev.declared_parent_id != pid or prev.start_time != n.start_time
              or (prev.name != n.name and n.run_id in flagged)):
            return None
    placing = _parents_first(new)
    if placing is None:
        return None
    out = dict(nodes)
    roots, owned = old.roots, set()

    def own(rid: str) -> ModelNode:
        """The node ``rid`` of ``out`` with a children list this update may change."""
        node = out[rid]
        if rid not in owned:
            if node is nodes.get(rid):
                node = out[rid] = copy_node(node)
            node.children = list(node.children)
            owned.add(rid)
        return node

    for n in changed:  # in the order read, as a full build of the same runs orders them
        node = out[n.run_id] = copy_node(n)
        prev = nodes.get(n.run_id)
        if prev is None:
            node.parent_id, node.children = n.declared_parent_id or None, []
            owned.add(n.run_id)
        else:
            node.parent_id, node.children, node.depth = prev.parent_id, prev.children, prev.depth
    for n in placing:
        node = out[n.run_id]
        if node.parent_id is None:
            node.depth = 0
            if roots is old.roots:
                roots = list(roots)
            insort(roots, n.run_id, key=lambda rid: order_key(out[rid]))
        else:
            parent = own(node.parent_id)
            node.depth = parent.depth + 1
            insort(parent.children, n.run_id, key=lambda rid: order_key(out[rid]))
    externals = [w.run_id for w in old.warnings if w.kind == "external"]
    for rid in externals:  # after the experiment's own runs, as a full build orders them
        out[rid] = out.pop(rid)
    warnings = [w for w in old.warnings if w.kind in LINK_KINDS]  # the same links, so the same warnings
    warnings += _failed_warnings(old, out, changed)
    bad_tags = _bad_tag_warnings(old, out, changed, new)
    warnings += (node_warnings(out.values(), metadata_problems) if bad_tags is None
                 else _metadata_warnings(metadata_problems) + bad_tags)
    return Forest(out, roots, warnings)


def _failed_warnings(old: Forest, out: dict[str, ModelNode], changed: Sequence[ModelNode]) -> list[LineageWarning]:
    """The failed runs of ``out`` in start order, from ``old``'s and the changed runs (no scan of all)."""
    ids = {w.run_id for w in old.warnings if w.kind == "failed"} - {n.run_id for n in changed}
    ids.update(n.run_id for n in changed if n.status in FAILED_STATUSES)
    return [failed_warning(n) for n in sorted((out[rid] for rid in ids if rid is not None), key=order_key)]


def _bad_tag_warnings(old: Forest, out: dict[str, ModelNode], changed: Sequence[ModelNode],
                      new: dict[str, ModelNode]) -> list[LineageWarning] | None:
    """The unreadable-tag warnings in node order, from ``old``'s; None when a run already read
    gained or lost one (its place among the others is only known from a scan)."""
    had = [w.run_id for w in old.warnings if w.kind == "bad_tag" and w.run_id is not None]
    had_set = set(had)
    if any(("_problems" in n.tags) != (n.run_id in had_set) for n in changed if n.run_id not in new):
        return None
    ids = [rid for rid in had if not out[rid].external]
    ids += [rid for rid, n in new.items() if "_problems" in n.tags]
    ids += [rid for rid in had if out[rid].external]
    return [_bad_tag(out[rid]) for rid in ids]


def _parents_first(new: dict[str, ModelNode]) -> list[ModelNode] | None:
    """New nodes ordered so each comes after a new parent; None when they name each other in a cycle."""
    placed: set[str] = set()
    order: list[ModelNode] = []
    pending = list(new.values())
    while pending:
        ready = [n for n in pending if n.declared_parent_id not in new or n.declared_parent_id in placed]
        if not ready:
            return None
        order += ready
        placed.update(n.run_id for n in ready)
        pending = [n for n in pending if n.run_id not in placed]
    return order
