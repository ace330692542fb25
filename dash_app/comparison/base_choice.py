"""Which model a comparison is against (the base), why, and the order of the compared models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlflow_cc import contract
from mlflow_cc.read.lineage import Forest, ModelNode

ROW_MODES = ("classes", "subgroups", "instances")


LAYER_KINDS = ("weights", "activations")


@dataclass(frozen=True)
class BaseChoice:
    """The base model's run id and why it is the base, in a short sentence for the page."""

    run_id: str
    reason: str
    #: True when the base is not one of the selected models (it is compared as well).
    added: bool = False


def has_outputs(node: ModelNode) -> bool:
    """The run logged per-instance outputs (the tag written with them)."""
    return bool(node.tags.get(contract.TAG_DATASET) or node.tags.get(contract.TAG_DATASET_RUN))


def choose_base(forest: Forest, run_ids: Iterable[str], requested: str | None = None) -> BaseChoice | None:
    """The base of a comparison of ``run_ids``.

    ``requested`` (the user's pick) wins when it is selected or is the default. Otherwise: the
    selection's closest common ancestor (a selected model or not) with outputs; if it has none,
    its closest ancestor with outputs; without a common ancestor (several roots), the selected
    model closest to a root, preferring one with outputs.
    """
    selected = [r for r in dict.fromkeys(run_ids) if r in forest.nodes]
    if not selected:
        return None
    default = _default(forest, selected)
    if requested and requested != default.run_id and requested in selected:
        return BaseChoice(requested, "chosen by you")
    return default


def default_base(forest: Forest, run_ids: Iterable[str]) -> str | None:
    """The default base's run id (see :func:`choose_base`)."""
    choice = choose_base(forest, run_ids)
    return choice.run_id if choice else None


def _default(forest: Forest, selected: list[str]) -> BaseChoice:
    chosen = set(selected)
    paths = [[*reversed(forest.ancestors(r)), r] for r in selected]
    common = [p[0] for p in zip(*paths) if all(x == p[0] for x in p)]
    if common:
        cca = common[-1]
        for k, rid in enumerate(reversed(common)):
            if has_outputs(forest.nodes[rid]):
                where = "the selection's closest common ancestor" if k == 0 else (
                    "the closest ancestor with outputs of the selection's common ancestor "
                    f"({forest.nodes[cca].name}, which has none)")
                if rid in chosen:
                    return BaseChoice(rid, f"{where}, selected")
                return BaseChoice(rid, f"{where}, added to the comparison", added=True)
    nodes = sorted((forest.nodes[r] for r in selected), key=lambda n: (not has_outputs(n), n.depth, n.start_time,
                                                                        n.run_id))
    why = ("the selected model closest to a root (the selection has no common ancestor with outputs)"
           if common else "the selected model closest to a root (the selection spans several base models)")
    return BaseChoice(nodes[0].run_id, why)


def ordered_models(forest: Forest, run_ids: Iterable[str], base: str) -> list[str]:
    """The base first, then the other selected models in tree (depth-first) order."""
    chosen = set(run_ids)
    rest = [n.run_id for n in forest.walk() if n.run_id in chosen and n.run_id != base]
    rest += sorted(r for r in chosen if r not in forest.nodes and r != base)
    return [base, *rest]
