"""Explain a selection (:func:`explain_selection`) and narrow it by the user's choices (:func:`refine`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlflow_cc.analysis.selection.cut_tree import _CutTree
from mlflow_cc.analysis.selection.model import Explanation, _distinct, _member
from mlflow_cc.analysis.selection.search import _Search
from mlflow_cc.analysis.selection.simplify import _axes, _simplify
from mlflow_cc.analysis.selection.variables import _replay, _unique_names
from mlflow_cc.read.lineage import Forest


def refine(explanation: Explanation, choices: dict[str, Any]) -> list[str]:
    """Run ids whose values match ``choices`` (variable name -> a value or a list of values).

    The Refine Comparison panel narrows the selection with this, then explains it again.
    """
    allowed = {k: (v if isinstance(v, (list, tuple, set, frozenset)) else [v]) for k, v in choices.items()}
    return [rid for rid, vals in explanation.values.items()
            if all(_member(vals.get(k), opts) for k, opts in allowed.items())]


def explain_selection(forest: Forest, selected: Iterable[str]) -> Explanation:
    """Explain how the ``selected`` models differ with as few, and as cheap, variables as possible.

    Ids not in ``forest`` are ignored (a selection can outlive a refresh).
    """
    rows = sorted({rid for rid in selected if rid in forest.nodes})
    if not rows:
        return Explanation([], {}, None, None, True, {})
    tree = _CutTree(forest, rows)
    moves = _Search(tree).best_walk()
    constants: dict[str, Any] = {}
    raw = _replay(tree, moves, constants)
    variables = _simplify([v for v in raw if len(_distinct(v.values)) > 1])
    _unique_names(variables)
    final = [v.public() for v in variables]
    values = {tree.ids[r]: {v.name: v.values[i] for v in variables} for i, r in enumerate(tree.rows)}
    comparable = len(final) <= 2
    x, color = _axes(variables, final) if comparable else (None, None)
    refine_options = {} if comparable else {v.name: list(v.levels) for v in final}
    return Explanation(final, values, x, color, comparable, refine_options, constants)
