"""Replaying the winning walk into candidate variables, one per column of moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow_cc.analysis.selection.cut_tree import Move, _CutTree
from mlflow_cc.analysis.selection.model import (
    _BASE_NAME,
    _BASE_OP,
    _MISSING,
    _NONE_LABEL,
    COST_BASE,
    COST_OP_TYPE,
    COST_PARAM,
    COST_PRESENCE,
    COST_SEQUENCE,
    Variable,
    _plain_label,
    _sort_key,
    _typed,
)


@dataclass(eq=False)  # identity hash: a key of the _Counts cache
class _Var:
    """A variable with one value per selected model (row), before it is made public."""

    name: str
    kind: str
    cost: int
    col: int
    values: list[Any]
    op: str = ""  # presence/param: the column it belongs to
    key: str = ""  # param: the parameter
    none_label: str = _NONE_LABEL
    #: Merged variables: display text and sort key per (typed) value.
    texts: dict[tuple[str, Any], str] | None = None
    keys: dict[tuple[str, Any], Any] | None = None
    is_ordinal: bool | None = None

    def sort_key(self, value: Any) -> Any:
        if self.keys is not None:
            return self.keys[_typed(value)]
        if self.kind == "sequence":  # cumulative: order by length
            return 0 if value == _NONE_LABEL else value.count(" → ") + 1
        return _sort_key(value)

    def label(self, value: Any) -> str:
        if self.texts is not None:
            return self.texts[_typed(value)]
        if self.kind == "presence":
            return "yes" if value else "no"
        if value is None:
            return self.none_label
        return _plain_label(value)

    def short(self, value: Any) -> str:
        """This variable's part of a merged label; "" for an absent thing."""
        if self.texts is not None:
            return self.label(value)
        if self.kind == "presence":
            return self.name if value else ""
        if value is None or (self.kind == "sequence" and value == _NONE_LABEL):
            return ""
        if self.kind == "param":  # a word reads alone ("global magnitude"); a number needs its name
            text = _plain_label(value)
            return text if isinstance(value, str) else f"{self.key} {text}"
        return self.label(value)

    def ordinal(self) -> bool:
        """Ordered values, which read best on an x axis (numbers, sequences)."""
        if self.is_ordinal is not None:
            return self.is_ordinal
        if self.kind == "sequence":
            return True
        vals = [v for v in self.values if v is not None]
        return self.kind == "param" and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for v in vals)

    def public(self) -> Variable:
        levels = sorted({_typed(v): v for v in self.values}.values(), key=self.sort_key)
        return Variable(self.name, self.kind, self.cost, tuple(levels),
                        tuple(self.label(v) for v in levels))


def _replay(tree: _CutTree, moves: list[Move], constants: dict[str, Any]) -> list[_Var]:
    """Apply the walk to every selected model and read off one column of variables per move.

    Parameters every selected model shares are put in ``constants``.
    """
    paths = [tree.path(r) for r in tree.rows]
    pos = [0] * len(paths)
    counts: dict[str, int] = {}
    out: list[_Var] = []
    last_name = ""

    def numbered(op: str) -> str:
        counts[op] = counts.get(op, 0) + 1
        return op if counts[op] == 1 else f"{op} {counts[op]}"

    for col, (kind, op) in enumerate(moves):
        nxt = [p[i] if i < len(p) else None for p, i in zip(paths, pos)]
        if kind == "sequence":
            vals = [" → ".join(tree.op[n] for n in p[i:]) or _NONE_LABEL for p, i in zip(paths, pos)]
            out.append(_Var("recipe", "sequence", COST_SEQUENCE, col, vals))
            break
        if kind == "type":
            ops = sorted({tree.op[n] for n in nxt if n is not None})
            name = f"operation after {last_name}" if last_name else "first operation"
            out.append(_Var(name, "op_type", COST_OP_TYPE, col,
                            [tree.op[n] if n is not None else None for n in nxt]))
            for o in ops:
                out.extend(_param_vars(tree, numbered(o), col, [n if n is not None and tree.op[n] == o
                                                                else None for n in nxt], constants))
            moving = [n is not None for n in nxt]
        else:
            moving = [n is not None and tree.op[n] == op for n in nxt]
            if op == _BASE_OP:
                out.extend(_param_vars(tree, "", col, nxt, constants))
            else:
                name = last_name = numbered(op)
                out.append(_Var(name, "presence", COST_PRESENCE, col, moving, op=name))
                out.extend(_param_vars(tree, name, col, [n if m else None for n, m in zip(nxt, moving)],
                                       constants))
        pos = [i + 1 if m else i for i, m in zip(pos, moving)]
    return out


def _unique_names(vs: list[_Var]) -> None:
    """Variable names are keys of the values table: number repeats ("recipe (2)")."""
    seen: set[str] = set()
    for v in vs:
        name, k = v.name, 1
        while name in seen:
            k += 1
            name = f"{v.name} ({k})"
        v.name = name
        seen.add(name)


def _param_vars(tree: _CutTree, column: str, col: int, nodes: list[int | None],
                constants: dict[str, Any]) -> list[_Var]:
    """A variable per parameter with more than one value where the operation is applied.

    Elsewhere the value is None; a parameter that only tells "applied or not" adds nothing
    to the presence variable of its column, as in the search's costs.
    """
    applied = [n for n in nodes if n is not None]
    out = []
    for k in sorted({k for n in applied for k in tree.params[n]}):
        seen = {_typed(tree.params[n].get(k, _MISSING)) for n in applied}
        vals = [None if n is None else tree.params[n].get(k, None) for n in nodes]
        name = _BASE_NAME if k == _BASE_NAME else f"{column}.{k}"
        if len(seen) == 1:
            if len(applied) == len(nodes) and vals[0] is not None:
                constants[name] = vals[0]
        elif k == _BASE_NAME:
            out.append(_Var(name, "base", COST_BASE, col, vals))
        else:
            absent = f"no {column}" if all(k in tree.params[n] for n in applied) else f"no {k}"
            out.append(_Var(name, "param", COST_PARAM, col, vals, op=column, key=k, none_label=absent))
    return out
