"""Layers table: AG Grid column definitions, compact row payloads and the legend (pure, no Dash).

A row is a module (or, for weights, one of its tensors). Each model's cell is drawn by
the ``CmpLayer`` renderer of ``assets/comparison.js`` from the numbers built here: the
sparsity split, the change-bucket fractions, and the tensor's histogram (bins x change
buckets; bins shared by all models of that tensor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dash_app.figures.behaviours import title_width
from mlflow_cc.analysis.layer_compare import CHANGE_BUCKETS, CHANGE_THRESHOLDS

#: Colours of the change buckets (the same list is in assets/comparison.js).
BUCKET_COLORS = ("#c6dbef", "#fdd49e", "#fc8d59", "#d7301f", "#54278f", "#bdbdbd")
SPLIT_COLORS = ("#8c8c8c", "#d7301f", "#2b8cbe")
SPLIT_NAMES = ("zero in both", "zeroed in model only (pruned)", "zero in base only (revived)")
SHOW_OPTIONS = (("sparsity", "sparsity"), ("weights", "weight distribution"),
                ("activations", "activation distribution"))
LAYER_COLUMN_WIDTH = 170
#: What the Δ score next to each cell means (the legend and the model columns' header tooltip).
DELTA_TEXT = ("Δ = change vs the base: ‖w − w_base‖ / ‖w_base‖ over the module's values "
              "(relative L2, no unit: 0 = identical, 0.27 = 27 % of the base's norm)")


def legend(show: str) -> list[tuple[str, str]]:
    """(colour, text) pairs explaining the cells of ``show``."""
    if show == "sparsity":
        return list(zip(SPLIT_COLORS, SPLIT_NAMES))
    lo, mid, hi = (f"{100 * t:g}%" for t in CHANGE_THRESHOLDS)
    words = {"unchanged": f"unchanged (< {lo})", "small": f"{lo}–{mid} change", "medium": f"{mid}–{hi} change",
             "large": f"≥ {hi} change", "zeroed": "zeroed (pruned)", "not compared": "not compared (shape differs)"}
    return [(c, words[b]) for c, b in zip(BUCKET_COLORS, CHANGE_BUCKETS)] + [
        ("", "bar height: √(number of values); colour: change of each value vs the base"), ("", DELTA_TEXT)]


def layer_column_width(n_models: int, room: int = 1300) -> int:
    """Pixels per model column: 170, narrower (down to 104, the Δ then in the tooltip) for many models."""
    return int(min(LAYER_COLUMN_WIDTH, max(104, room // max(n_models, 1))))


def column_defs(models: Sequence[Mapping[str, Any]], *, show: str,
                unavailable: Mapping[str, str]) -> list[dict[str, Any]]:
    """The module name column (tree), then one column per model (base first)."""
    width = layer_column_width(len(models))
    cols: list[dict[str, Any]] = [{
        "headerName": "module", "field": "id", "colId": "label", "cellRenderer": "CmpTreeName",
        "width": 340 if len(models) <= 6 else 260, "pinned": "left", "sortable": False, "filter": False}]
    for i, model in enumerate(models):
        run_id = str(model["run_id"])
        params: dict[str, Any] = {"base": i == 0, "href": str(model.get("url") or ""),
                                  "title": model.get("title") or f"{model.get('full_name', model['name'])} ({run_id})"}
        if run_id in unavailable:
            params["note"] = f"{show if show != 'sparsity' else 'weights'} {unavailable[run_id]}"
        col_width = max(width, title_width(str(model["name"]), i == 0))
        cols.append({"headerName": str(model["name"]), "colId": f"m{i}", "field": f"c{i}",
                     "headerComponentParams": {"innerHeaderComponent": "CmpHeader", **params},
                     **({"headerTooltip": DELTA_TEXT} if show != "sparsity" and i > 0 else {}),
                     "cellRenderer": "CmpLayer",
                     "cellRendererParams": {"model": f"m{i}", "show": show, "width": col_width},
                     "width": col_width, "sortable": False, "filter": False})
    return cols


def rows_payload(rows: Sequence[Mapping[str, Any]], run_ids: Sequence[str], show: str) -> list[dict[str, Any]]:
    """Rows for the grid: tree fields plus ``cells`` keyed ``m<i>`` with only what ``show`` draws.

    Histograms are rescaled to integers 0..100 of the tallest bin (the cell is a few
    dozen pixels high), which keeps a 12-model page small.
    """
    out = []
    for row in rows:
        cells: dict[str, Any] = {}
        for i, run_id in enumerate(run_ids):
            cell = dict(row["cells"].get(run_id) or {})
            slim: dict[str, Any] = {k: cell[k] for k in ("status", "unavailable") if k in cell}
            if "change" in cell:
                slim["change"] = _round(cell["change"])
            if show == "sparsity":
                slim["sparsity"] = _round(cell.get("sparsity"))
                if cell.get("split"):
                    slim["split"] = [_round(v) for v in cell["split"]]
            else:
                if cell.get("hist"):
                    slim["hist"] = _scale_hist(cell["hist"])
                elif cell.get("buckets"):
                    slim["buckets"] = [_round(v) for v in cell["buckets"]]
            cells[f"m{i}"] = slim
        out.append({"id": row["id"], "name": row["name"], "label": row["label"], "depth": row["depth"],
                    "has_children": row["has_children"], "expanded": row["expanded"], "kind": row["kind"],
                    "cells": cells})
    return out


def _scale_hist(hist: Sequence[Sequence[int]]) -> list[list[int]]:
    arr = np.asarray(hist, dtype=np.int64)
    if arr.size == 0:
        return []
    top = int(arr.sum(axis=1).max())
    if top <= 0:
        return [[] for _ in range(arr.shape[0])]
    # Round up so that a bin with any values stays visible; trailing zero buckets are dropped.
    scaled = (arr * 100 + top - 1) // top
    lengths = np.where(scaled > 0, np.arange(1, arr.shape[1] + 1), 0).max(axis=1)
    return [row[:n] for row, n in zip(scaled.tolist(), lengths.tolist())]


def _round(value: Any) -> float | None:
    if value is None:
        return None
    return float(f"{float(value):.4g}")
