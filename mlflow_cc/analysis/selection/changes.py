"""What changed, in words: the operations on the path from a selection's closest common ancestor
to each selected model (pure; the words are :func:`mlflow_cc.read.op_words.operation_text`'s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlflow_cc.read.lineage import Forest
from mlflow_cc.read.op_words import operation_text


@dataclass(frozen=True)
class PathChange:
    """One selected model and the operations from the common ancestor to it, in order."""

    run_id: str
    name: str
    steps: tuple[str, ...]

    def text(self) -> str:
        """``prune 90% magnitude → finetune 2 ep``; ``the common ancestor itself`` with no step."""
        return " → ".join(self.steps) if self.steps else "the common ancestor itself"


@dataclass(frozen=True)
class WhatChanged:
    """The selection's closest common ancestor (None: the models have different bases) and each path."""

    ancestor: str | None
    ancestor_name: str
    paths: tuple[PathChange, ...]


def _chain(forest: Forest, run_id: str) -> list[str]:
    """``run_id``, its parent, ... up to its root."""
    return [run_id, *forest.ancestors(run_id)]


def common_ancestor(forest: Forest, ids: Sequence[str]) -> str | None:
    """The deepest model that is (or is an ancestor of) every one of ``ids``; None across trees."""
    ids = [r for r in ids if r in forest.nodes]
    if not ids:
        return None
    shared = set(_chain(forest, ids[0]))
    for rid in ids[1:]:
        shared &= set(_chain(forest, rid))
    return next((r for r in _chain(forest, ids[0]) if r in shared), None)


def what_changed(forest: Forest, ids: Sequence[str]) -> WhatChanged:
    """The operations from the selection's common ancestor down to each selected model.

    Without a common ancestor (models derived from different bases) each path starts at its
    own base model, which is named as the first step (``from <base>``). One model: the path
    from its base model.
    """
    ids = [r for r in dict.fromkeys(ids) if r in forest.nodes]
    ancestor = common_ancestor(forest, ids)
    if len(ids) == 1:  # one model: what changed from its base model
        ancestor = forest.root_of(ids[0])
    paths = []
    for rid in ids:
        chain = _chain(forest, rid)
        below = chain[:chain.index(ancestor)] if ancestor in chain else chain
        steps = []
        for step in reversed(below):
            node = forest.nodes[step]
            if node.parent_id is None:  # a base model: the path starts from it
                steps.append(f"from {node.name}")
            else:
                steps.append(operation_text(node.operation or "derive", node.op_params))
        paths.append(PathChange(rid, forest.nodes[rid].name, tuple(steps)))
    name = forest.nodes[ancestor].name if ancestor is not None else ""
    return WhatChanged(ancestor, name, tuple(paths))
