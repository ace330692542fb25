"""The Behaviours grid's significance marks: header and tooltip texts, and the fields the
``CmpBar`` / ``CmpHeader`` renderers of ``assets/comparison.js`` read (pure, no Dash; plain text).

A tested cell carries ``t<i>`` (its tooltip: the difference, its interval, p and q) and, when the
difference is significant after the Benjamini–Hochberg correction, ``s<i>`` = 1 (the marker).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dash_app.figures.behaviours import value_kind, value_text

#: The marker drawn on significant cells and headers.
MARK = "✱"


def p_text(p: float) -> str:
    """A p-value in two significant digits (``p < 0.0001`` below that)."""
    if p is None or not math.isfinite(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"= {p:.2g}"


def _interval(metric: str, rec: Mapping[str, Any]) -> str:
    return f"[{value_text(metric, rec['lo'], True)}, {value_text(metric, rec['hi'], True)}]"


def tip(metric: str, rec: Mapping[str, Any], level: float) -> str:
    """One cell's test in words: Δ, its interval, p (which test), q, pairs, and the verdict."""
    if not rec or not math.isfinite(rec.get("p", math.nan)):
        return "not tested (no paired instances)" if rec else ""
    test = {"mcnemar exact": "McNemar exact", "mcnemar mid-p": "McNemar mid-p"}.get(rec["test"], "paired bootstrap")
    verdict = (f"significant at FDR {level:.0%}" if rec["significant"]
               else f"not significant at FDR {level:.0%}")
    return (f"Δ vs base {value_text(metric, rec['delta'], True)} {_interval(metric, rec)} "
            f"({1 - level:.0%} bootstrap interval) · p {p_text(rec['p'])} ({test}), "
            f"BH q {p_text(rec['q'])} · {int(rec['n']):,} pairs · {verdict}")


def header_delta(metric: str, rec: Mapping[str, Any] | None, relative: bool = False) -> str:
    """A header's dataset-wide difference with its interval: ``Δ +1.2 [+0.4, +2.0]% ✱`` (fractions in
    points), ``Δ +0.12 [0.04, 0.2]`` (``relative``: the header shows Δ already, so ``CI [+0.4, +2.0]% ✱``)."""
    if not rec or not math.isfinite(rec.get("delta", math.nan)):
        return ""
    mark = f" {MARK}" if rec["significant"] else ""
    if value_kind(metric) == "pct":  # compact: a header is 100-150 px wide
        head = "CI" if relative else f"Δ {rec['delta'] * 100:+.1f}"
        return f"{head} [{rec['lo'] * 100:+.1f}, {rec['hi'] * 100:+.1f}]%{mark}"
    head = "CI" if relative else f"Δ {value_text(metric, rec['delta'], True)}"
    return f"{head} {_interval(metric, rec)}{mark}"


def decorate_columns(columns: list[dict[str, Any]], overall: Sequence[Mapping[str, Any] | None], metric: str,
                     level: float, tested: bool, relative: bool = False) -> None:
    """Add the significance fields to the model columns ``v<i>`` (in place)."""
    for col in columns:
        col_id = str(col.get("colId", ""))
        if not (col_id.startswith("v") and col_id[1:].isdigit()):
            continue
        i = int(col_id[1:])
        rec = overall[i] if i < len(overall) else None
        if rec is not None:
            params = col.setdefault("headerComponentParams", {})
            params["delta"] = header_delta(metric, rec, relative)
            params["deltaTip"] = "overall: " + tip(metric, rec, level)
            params["deltaSig"] = bool(rec["significant"])
        if tested and i > 0:
            col.setdefault("cellRendererParams", {}).update({"sig": f"s{i}", "tip": f"t{i}"})


def decorate_rows(rows: list[dict[str, Any]], tests: Mapping[str, Mapping[int, Mapping[str, Any]]], metric: str,
                  level: float) -> None:
    """Add ``t<i>`` (tooltip) and ``s<i>`` (significant) to a page of row payloads (in place)."""
    for row in rows:
        for i, rec in tests.get(str(row.get("key")), {}).items():
            row[f"t{i}"] = tip(metric, rec, level)
            if rec["significant"]:
                row[f"s{i}"] = 1
