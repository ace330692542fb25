"""Which model a comparison is against (the base) and the order of the compared models.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow_cc.read.lineage import Forest

ROW_MODES = ("classes", "subgroups", "instances")


LAYER_KINDS = ("weights", "activations")


def default_base(forest: Forest, run_ids: Iterable[str]) -> str | None:
    """The selected model closest to a root (smallest depth); ties: the earliest logged."""
    nodes = [forest.nodes[r] for r in run_ids if r in forest.nodes]
    if not nodes:
        return None
    return min(nodes, key=lambda n: (n.depth, n.start_time, n.run_id)).run_id


def ordered_models(forest: Forest, run_ids: Iterable[str], base: str) -> list[str]:
    """The base first, then the other selected models in tree (depth-first) order."""
    chosen = set(run_ids)
    rest = [n.run_id for n in forest.walk() if n.run_id in chosen and n.run_id != base]
    rest += sorted(r for r in chosen if r not in forest.nodes and r != base)
    return [base, *rest]
