"""The provenance tree cut to a selection and its ancestors, under a synthetic root, with the chain tables the search walks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mlflow_cc.analysis.selection.model import (
    _BASE_NAME,
    _BASE_OP,
    MAX_CHAIN,
    _hashable,
)
from mlflow_cc.read.lineage import Forest


class _CutTree:
    """The selection and its ancestors under a synthetic root (index 0), as flat int arrays."""

    def __init__(self, forest: Forest, selected: list[str]) -> None:
        self.ids: list[str] = [""]
        index: dict[str, int] = {}
        for rid in selected:  # walk up until a node already in the cut tree
            cur: str | None = rid
            while cur is not None and cur not in index:
                index[cur] = len(self.ids)
                self.ids.append(cur)
                cur = forest.nodes[cur].parent_id
        n = len(self.ids)
        self.children: list[list[int]] = [[] for _ in range(n)]
        self.parent = [0] * n
        self.selected = [False] * n
        self.op: list[str] = [_BASE_OP] * n
        self.params: list[dict[str, Any]] = [{} for _ in range(n)]
        roots = [i for i in range(1, n) if forest.nodes[self.ids[i]].parent_id is None]
        base_names = _base_labels(forest, [self.ids[i] for i in roots])
        for i in range(1, n):
            node = forest.nodes[self.ids[i]]
            if node.parent_id is None:
                self.params[i] = {_BASE_NAME: base_names[node.run_id]}
                self.children[0].append(i)
            else:
                self.op[i] = node.operation or "derive"  # the map's name for an unnamed operation
                self.params[i] = {k: _hashable(v) for k, v in node.op_params.items()}
                self.parent[i] = index[node.parent_id]
                self.children[self.parent[i]].append(i)
        for c in self.children:
            c.sort(key=lambda i: self.ids[i])
        for rid in selected:
            self.selected[index[rid]] = True
        self.rows = [index[rid] for rid in selected]
        self.sig = [(self.op[i], tuple(sorted(self.params[i].items()))) for i in range(n)]
        self._chains()

    def _chains(self) -> None:
        """Per node, its subtree as a chain of signatures (or None if it branches)."""
        n = len(self.ids)
        order: list[int] = []
        stack = [0]
        while stack:
            i = stack.pop()
            order.append(i)
            stack.extend(self.children[i])
        self.chain: list[tuple[Any, ...] | None] = [None] * n
        self.chain_sel: list[tuple[int, ...]] = [()] * n  # 1-based positions of selected models
        # Uncapped: whether the subtree is a chain, its length and selected models in it.
        self.chain_len = [0] * n
        self.chain_nsel = [0] * n
        self.ops_below: list[frozenset[str]] = [frozenset()] * n
        for i in reversed(order):
            kids = self.children[i]
            self.ops_below[i] = frozenset({self.op[i]}).union(*(self.ops_below[k] for k in kids))
            own = (1,) if self.selected[i] else ()
            if not kids or (len(kids) == 1 and self.chain_len[kids[0]]):
                tail_len, tail_sel = (self.chain_len[kids[0]], self.chain_nsel[kids[0]]) if kids else (0, 0)
                self.chain_len[i], self.chain_nsel[i] = tail_len + 1, tail_sel + len(own)
            if not kids:
                self.chain[i], self.chain_sel[i] = (self.sig[i],), own
            elif len(kids) == 1 and (tail := self.chain[kids[0]]) is not None and len(tail) < MAX_CHAIN:
                self.chain[i] = (self.sig[i], *tail)
                self.chain_sel[i] = own + tuple(p + 1 for p in self.chain_sel[kids[0]])

    def path(self, i: int) -> list[int]:
        """Nodes from a root model down to ``i`` (the synthetic root left out)."""
        out: list[int] = []
        while i != 0:
            out.append(i)
            i = self.parent[i]
        return out[::-1]


def _base_labels(forest: Forest, roots: list[str]) -> dict[str, str]:
    """Root model names, with a short run id where two roots share a name."""
    names = [forest.nodes[r].name for r in roots]
    seen = Counter(names)
    return {r: (nm if seen[nm] == 1 else f"{nm} ({r[:8]})") for r, nm in zip(roots, names)}


#: A pointer: (node it sits at, child it heads to). Done pointers are only counted.
Token = tuple[int, int]


#: (pointers still walking, whether some selected model has been reached already).
State = tuple[frozenset[Token], bool]


#: ("shared" | "presence" | "type" | "sequence", operation name or "").
Move = tuple[str, str]
