"""One page of a large table, filtered and sorted on the server (the grids' server-side row model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Filter operators accepted by :func:`page`.
FILTER_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "isnull", "notnull")


@dataclass
class Page:
    """One page of a table: ``rows`` (at most ``limit``), and ``total`` rows after filtering."""

    rows: pd.DataFrame
    total: int
    offset: int


def page(table: pd.DataFrame, sort_by: str | None = None, ascending: bool = True,
         filters: Sequence[tuple[str, str, Any]] = (), offset: int = 0, limit: int = 100,
         columns: Sequence[str] | None = None) -> Page:
    """Filter, sort and slice ``table`` on the server; return only the requested rows.

    ``filters``: ``(column, op, value)`` with ``op`` in :data:`FILTER_OPS`, combined
    with AND. Sorting is stable and puts NaN last in either direction. ``columns``
    limits the returned columns (the payload sent to a browser).
    """
    mask = np.ones(len(table), dtype=bool)
    for col, op, value in filters:
        mask &= _filter_mask(table[col], op, value)
    total = int(mask.sum()) if filters else len(table)
    idx = np.flatnonzero(mask) if filters else np.arange(len(table))
    start = max(int(offset), 0)
    need = start + max(int(limit), 0)
    if sort_by is not None:
        values = table[sort_by].to_numpy()
        values = values if not filters else values[idx]
        if values.dtype.kind in "fiub":
            idx = idx[_numeric_order(values.astype(np.float64, copy=False), ascending, need)]
        else:
            keys = pd.Series(values).astype(str).to_numpy()
            idx = idx[np.argsort(keys, kind="stable") if ascending else _stable_descending(keys)]
    chosen = idx[start:need]
    rows = table.iloc[chosen]
    if columns is not None:
        rows = rows[list(columns)]
    return Page(rows=rows, total=total, offset=start)


def _numeric_order(values: np.ndarray, ascending: bool, need: int) -> np.ndarray:
    """Positions of ``values`` in stable sorted order, NaN last: at least the first ``need`` of them.

    A first page of a large table needs its first rows only: they are found by a partition
    (linear) and only the candidates are sorted; ties keep their original order either way.
    """
    nan = np.isnan(values)
    keyed = np.where(nan, np.inf, values if ascending else -values)
    n = len(keyed)
    if 0 < need < n // 8:
        kth = np.partition(keyed, need - 1)[need - 1]
        if np.isfinite(kth):  # the first `need` rows are all among the values <= kth (no NaN, no inf)
            candidates = np.flatnonzero(keyed <= kth)
            return candidates[np.argsort(keyed[candidates], kind="stable")]
    return np.lexsort((np.where(nan, 0.0, keyed), nan))  # NaN last, then by value; lexsort is stable


def _stable_descending(keys: np.ndarray) -> np.ndarray:
    # Descending while ties keep their original order: sort the reversed array, map back.
    rev = np.argsort(keys[::-1], kind="stable")[::-1]
    return len(keys) - 1 - rev


def _filter_mask(series: pd.Series, op: str, value: Any) -> np.ndarray:
    if op == "isnull":
        return series.isna().to_numpy()
    if op == "notnull":
        return series.notna().to_numpy()
    if op in ("in", "not in"):
        hit = series.isin(list(value)).to_numpy()
        return hit if op == "in" else ~hit
    if op == "contains":
        return series.astype(str).str.contains(str(value), case=False, regex=False).fillna(False).to_numpy(bool)
    compare = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
               ">": np.greater, ">=": np.greater_equal}.get(op)
    if compare is None:
        raise ValueError(f"unknown filter operator {op!r}; use one of {FILTER_OPS}")
    values = series.to_numpy()
    if values.dtype.kind in "fiub" and isinstance(value, str):
        value = float(value)  # a value typed into a URL or a grid filter arrives as text
    with np.errstate(invalid="ignore"):
        return np.asarray(compare(values, value), dtype=bool) & series.notna().to_numpy()
