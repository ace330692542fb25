"""Paired significance of a behaviour comparison's differences, computed once per (metric, level)
and kept with the comparison (:class:`~dash_app.comparison.BehaviourSet`): what the Behaviours
grid marks, filters by and shows in its headers. The statistics are
:mod:`mlflow_cc.analysis.significance`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dash_app.comparison.behaviour_set import BehaviourSet
from mlflow_cc.analysis.significance import COLUMNS, LEVEL, behaviour_significance

__all__ = ["LEVEL", "LEVELS", "LEVEL_TEXT", "TESTED_ROWS", "cells", "overall", "parse_level", "significance",
           "significant_keys"]

#: Levels offered in the Behaviours view (the false discovery rate and 1 − the interval level).
LEVELS = (0.01, 0.05, 0.1)
#: The default level as the level control's value.
LEVEL_TEXT = f"{LEVEL:g}"
#: Row kinds that carry tests (instance rows are single pairs: no test).
TESTED_ROWS = ("classes", "subgroups")


def parse_level(text: Any) -> float:
    """A level from the URL or a control: one of :data:`LEVELS`, else the default 0.05."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return LEVEL
    return value if value in LEVELS else LEVEL


def significance(data: BehaviourSet, metric: str, level: float = LEVEL) -> pd.DataFrame:
    """Every test of ``metric`` (all rows, every model against the base), computed once per set."""
    b = data.behaviours
    if b is None or metric not in b.metrics:
        return pd.DataFrame(columns=COLUMNS)
    key = (metric, float(level))
    with data._lock:
        hit = data._significance.get(key)
    if hit is not None:
        return hit
    table = behaviour_significance(b, metric, level=level)
    with data._lock:
        data._significance[key] = table
    return table


def cells(data: BehaviourSet, mode: str, metric: str, level: float) -> dict[str, dict[int, dict[str, Any]]]:
    """Row key -> model index (in ``data.models``) -> that cell's test (a row of the table as a dict)."""
    if mode not in TESTED_ROWS:
        return {}
    table = significance(data, metric, level)
    index = {run_id: i for i, run_id in enumerate(data.models)}
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in table[table["partition"] == mode].to_dict("records"):
        i = index.get(rec["model"])
        if i is not None:
            out.setdefault(str(rec["key"]), {})[i] = rec
    return out


def significant_keys(data: BehaviourSet, mode: str, metric: str, level: float) -> list[str]:
    """Keys of the rows where at least one model differs significantly from the base."""
    if mode not in TESTED_ROWS:
        return []
    table = significance(data, metric, level)
    rows = table[(table["partition"] == mode) & table["significant"].astype(bool)]
    return sorted(set(rows["key"].astype(str)))


def overall(data: BehaviourSet, metric: str, level: float) -> list[dict[str, Any] | None]:
    """Per model of ``data.models``: its dataset-wide test, None for the base and models without outputs."""
    table = significance(data, metric, level)
    found = {rec["model"]: rec for rec in table[table["partition"] == "all"].to_dict("records")}
    return [found.get(run_id) for run_id in data.models]
