"""Reducing the candidate variables to at most two: drop single-valued ones, fold cumulative presence flags into sequences, fold variables another determines, merge small domains.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_cc.analysis.selection.model import (
    _NONE_LABEL,
    COST_SEQUENCE,
    MAX_MERGED_LEVELS,
    Variable,
    _join,
    _typed,
)
from mlflow_cc.analysis.selection.variables import _Var


class _Counts:
    """Distinct values of a variable and of a pair of variables, cached.

    A variable's values become integer codes once; a pair's count is then one ``np.unique``
    over m combined codes, and each pair is counted once however many merge passes run.
    """

    def __init__(self) -> None:
        self._codes: dict[_Var, tuple[np.ndarray, int]] = {}
        self._pairs: dict[tuple[_Var, _Var], int] = {}

    def _code(self, v: _Var) -> tuple[np.ndarray, int]:
        if v not in self._codes:
            index: dict[tuple[str, Any], int] = {}
            codes = np.fromiter((index.setdefault(_typed(x), len(index)) for x in v.values),
                                dtype=np.int64, count=len(v.values))
            self._codes[v] = (codes, len(index))
        return self._codes[v]

    def codes(self, v: _Var) -> np.ndarray:
        return self._code(v)[0]

    def n(self, v: _Var) -> int:
        return self._code(v)[1]

    def pair(self, a: _Var, b: _Var) -> int:
        if (a, b) not in self._pairs:
            (ca, _), (cb, nb) = self._code(a), self._code(b)
            self._pairs[(a, b)] = self._pairs[(b, a)] = len(np.unique(ca * nb + cb))
        return self._pairs[(a, b)]

    def determines(self, a: _Var, b: _Var) -> bool:
        """Each value of ``a`` goes with one value of ``b`` (b is constant once a is fixed)."""
        return self.pair(a, b) == self.n(a)


def _simplify(vs: list[_Var]) -> list[_Var]:
    """Fewer, plainer variables: always the lossless merges, the others only past two.

    When even merging leaves more than two, the plain variables are returned: the Refine
    panel reads better with "prune.sparsity" than with "prune.sparsity + finetune + ...".
    """
    counts = _Counts()
    plain = _fold_presence_into_params(_merge_cumulative(vs), counts)
    if len(plain) > 2 and not _two_may_do(plain, counts):
        return plain
    vs = list(plain)
    while len(vs) > 2 and _merge_dependent(vs, counts):
        pass
    while len(vs) > 2 and _merge_small(vs, counts):
        pass
    return vs if len(vs) <= 2 else plain


def _two_may_do(vs: list[_Var], counts: _Counts) -> bool:
    """Whether merging could end at two variables: merges keep every distinction, and a
    variable they leave has at most max(MAX_MERGED_LEVELS, largest domain) values, so the
    distinct rows must fit in that squared. Saves the merge passes on hopeless selections."""
    widest = max([MAX_MERGED_LEVELS, *(counts.n(v) for v in vs)])
    rows = len(set(zip(*(counts.codes(v).tolist() for v in vs))))
    return rows <= widest * widest


def _merge_cumulative(vs: list[_Var]) -> list[_Var]:
    """Presence flags where each implies the one before (A, A→B, A→B→C) -> one sequence.

    A sequence the search chose joins a run too, when its rows all have the run's flags.
    """
    steps = [v for v in vs if v.kind in ("presence", "sequence")]
    runs: list[list[_Var]] = []
    for f in steps:
        if runs and all(full or not _present(f, i) for i, full in enumerate(_full(runs[-1][-1]))):
            runs[-1].append(f)
        else:
            runs.append([f])
    out = [v for v in vs if v.kind not in ("presence", "sequence")]
    for run in runs:
        if len(run) == 1:
            out.append(run[0])
            continue
        vals = [" → ".join(_step_label(f, i) for f in run if _present(f, i)) or _NONE_LABEL
                for i in range(len(run[0].values))]
        out.append(_Var("recipe", "sequence", COST_SEQUENCE, run[0].col, vals))
    return sorted(out, key=lambda v: v.col)


def _present(v: _Var, i: int) -> bool:
    return bool(v.values[i]) if v.kind == "presence" else v.values[i] != _NONE_LABEL


def _full(v: _Var) -> list[bool]:
    """Per row: it went all the way through ``v`` (the flag is set; the longest sequence)."""
    if v.kind == "presence":
        return [bool(x) for x in v.values]
    longest = max(v.sort_key(x) for x in v.values)
    return [v.sort_key(x) == longest for x in v.values]


def _step_label(v: _Var, i: int) -> str:
    return v.name if v.kind == "presence" else str(v.values[i])


def _fold_presence_into_params(vs: list[_Var], counts: _Counts) -> list[_Var]:
    """Drop "calibrate yes/no" when "calibrate.batches" already says it (None = no calibrate)."""
    out = list(vs)
    for p in [v for v in vs if v.kind == "presence"]:
        for q in vs:
            if q.kind == "param" and q.op == p.op and counts.determines(q, p):
                q.none_label = f"no {p.name}"
                out.remove(p)
                break
    return out


def _merge_dependent(vs: list[_Var], counts: _Counts) -> bool:
    """Fold a variable that is constant once another is fixed into that other; True if done.

    The kept variable keeps its typed values and order; its labels gain the folded one's.
    """
    for keep in sorted(vs, key=lambda v: (not v.ordinal(), v.cost, v.col)):
        for drop in vs:
            if drop is not keep and counts.determines(keep, drop):
                first = keep.short if keep.kind == "presence" else keep.label
                texts = {_typed(x): _join(first(x), drop.short(y)) for x, y in zip(keep.values, drop.values)}
                keys = {_typed(x): keep.sort_key(x) for x in keep.values}
                merged = _Var(f"{keep.name} + {drop.name}", "merged", keep.cost + drop.cost,
                              min(keep.col, drop.col), list(keep.values), texts=texts, keys=keys,
                              is_ordinal=keep.ordinal())
                _replace(vs, [keep, drop], merged)
                return True
    return False


def _merge_small(vs: list[_Var], counts: _Counts) -> bool:
    """Merge the two variables whose realised combinations are fewest (<= MAX_MERGED_LEVELS).

    Conditional dependencies (B constant for some values of A) show up here as few combinations.
    """
    best: tuple[int, int, int] | None = None
    for i, a in enumerate(vs):
        for j in range(i + 1, len(vs)):
            n = counts.pair(a, vs[j])
            if n <= MAX_MERGED_LEVELS and (best is None or n < best[0]):
                best = (n, i, j)
    if best is None:
        return False
    a, b = vs[best[1]], vs[best[2]]
    values = [_join(a.short(x), b.short(y)) for x, y in zip(a.values, b.values)]
    if len(set(values)) < best[0]:  # short parts collided ("calibrate" the flag and the type)
        values = [f"{a.name}={a.label(x)}, {b.name}={b.label(y)}" for x, y in zip(a.values, b.values)]
    keys = {_typed(v): (a.sort_key(x), b.sort_key(y)) for v, x, y in zip(values, a.values, b.values)}
    _replace(vs, [a, b], _Var(f"{a.name} + {b.name}", "merged", a.cost + b.cost, a.col, values,
                              keys=keys, is_ordinal=False))
    return True


def _replace(vs: list[_Var], old: list[_Var], new: _Var) -> None:
    at = min(vs.index(o) for o in old)
    for o in old:
        vs.remove(o)
    vs.insert(at, new)


def _axes(vs: list[_Var], final: list[Variable]) -> tuple[Variable | None, Variable | None]:
    """x: the ordered variable with more levels (numbers and sequences read best on an axis)."""
    if not vs:
        return None, None
    order = sorted(range(len(vs)), key=lambda i: (not vs[i].ordinal(), -len(final[i].levels), vs[i].col))
    return final[order[0]], (final[order[1]] if len(order) > 1 else None)
