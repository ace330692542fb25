"""Behaviours table: AG Grid column definitions and row payloads (pure, no Dash).

The grid shows one column per model (``v<i>``, i = the model's index, base first).
Cells are drawn by the ``CmpBar`` renderer of ``assets/comparison.js`` from numbers;
headers by ``CmpHeader`` from the strings and counts built here. Nothing here is HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Words for the built-in metrics; registered metrics show their own name.
METRIC_LABELS = {"correct": "correctness", "flip": "prediction change rate", "confidence": "confidence on true label",
                 "logit_mse": "logit MSE", "kl": "KL divergence"}
#: Metrics of generation, regression and embedding outputs (see mlflow_cc.analysis.behaviour_kinds).
METRIC_LABELS.update({"exact_match": "exact match", "f1": "token F1", "answer_changed": "answer change rate",
                      "nll": "reference NLL", "perplexity": "reference perplexity",
                      "divergence": "next-token divergence", "abs_error": "absolute error",
                      "signed_error": "signed error", "prediction_change": "prediction change",
                      "cosine_to_base": "cosine to base", "l2_to_base": "distance to base"})
#: Metrics whose values are fractions in [0, 1], shown as percentages.
FRACTION_METRICS = frozenset({"correct", "flip", "confidence", "exact_match", "f1", "answer_changed"})
ROW_LABELS = {"classes": "class", "subgroups": "subgroup", "instances": "instance"}
MODEL_COLUMN_WIDTH = 150
#: Digits kept in row payloads (the browser draws bars, a few digits suffice).
PAYLOAD_DIGITS = 5


def metric_label(metric: str) -> str:
    """The metric's name in the user's words."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def value_kind(metric: str) -> str:
    """"pct" for fraction metrics, else "num" (how the renderer formats values)."""
    return "pct" if metric in FRACTION_METRICS else "num"


def value_text(metric: str, value: float | None, relative: bool = False) -> str:
    """A metric value as text: ``95.3%`` / ``+1.20%`` for fractions, 3 significant digits otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    sign = "+" if relative and value > 0 else ""
    if value_kind(metric) == "pct":
        digits = 2 if relative or (abs(value) < 0.1 and value != 0) else 1
        return f"{sign}{value * 100:.{digits}f}%"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{sign}{value:.2e}"
    return f"{sign}{value:.3g}"


def bar_scale(table: pd.DataFrame, n_models: int, metric: str, relative: bool) -> float:
    """The value a full bar stands for: 1 for absolute fractions, else the largest |value| shown."""
    if value_kind(metric) == "pct" and not relative:
        return 1.0
    cols = [f"v{i}" for i in range(n_models) if f"v{i}" in table.columns]
    if relative:
        cols = cols[1:]  # the base keeps absolute values in relative mode
    if not cols or table.empty:
        return 1.0
    values = np.abs(table[cols].to_numpy(np.float64))
    finite = values[np.isfinite(values)]
    hi = float(finite.max()) if finite.size else 0.0
    return hi if hi > 0 else 1.0


def title_width(title: str, base: bool = False) -> int:
    """Pixels a model column needs to show its whole title in one line (12px bold), with the
    ``(base)`` tag and the run link: a generous 7.4 px a character."""
    return int(len(title) * 7.4 + (48 if base else 0) + 34)


def model_column_width(n_models: int, room: int = 1310) -> int:
    """Pixels per model column: 150, narrower (down to 106) so that about 12 models fit side by side."""
    return int(min(MODEL_COLUMN_WIDTH, max(106, room // max(n_models, 1))))


def column_defs(models: Sequence[Mapping[str, Any]], *, mode: str, metric: str, relative: bool,
                summaries: Sequence[Mapping[str, Any]], higher_is_better: bool, scale: float,
                base_scale: float | None = None, preview_kind: str | None = None) -> list[dict[str, Any]]:
    """Columns: the row label (and preview, true label for instances), then one per model.

    ``models``: per model (base first) ``name``, ``run_id``; ``summaries``: per model
    the dataset-wide ``value``, histogram ``counts`` and ``missing`` reason (see
    :meth:`dash_app.comparison.BehaviourSet.summaries`).
    """
    number_filter = {"filter": "agNumberColumnFilter",
                     "filterParams": {"filterOptions": ["greaterThan", "lessThan", "inRange", "equals", "notEqual"],
                                      "maxNumConditions": 1, "buttons": ["reset"]}}
    cols: list[dict[str, Any]] = []
    if mode == "instances":
        cols.append({"headerName": "preview", "colId": "preview", "field": "pv", "cellRenderer": "CmpPreview",
                     "width": 260 if preview_kind == "text" else 80, "pinned": "left", "sortable": False,
                     "filter": False})
        cols.append({"headerName": "true label", "field": "name", "colId": "name", "cellRenderer": "CmpRowName",
                     "width": 120, "pinned": "left", "sortable": True,
                     "filter": "agTextColumnFilter", "filterParams": {"filterOptions": ["contains", "equals"],
                                                                     "maxNumConditions": 1, "buttons": ["reset"]}})
    else:
        cols.append({"headerName": ROW_LABELS[mode], "field": "name", "colId": "name", "cellRenderer": "CmpRowName",
                     "cellRendererParams": {"drill": True}, "width": 160, "pinned": "left", "sortable": True,
                     "filter": "agTextColumnFilter", "filterParams": {"filterOptions": ["contains", "equals"],
                                                                     "maxNumConditions": 1, "buttons": ["reset"]}})
        cols.append({"headerName": "instances", "field": "count", "colId": "count", "width": 84,
                     "pinned": "left", "sortable": True, **number_filter})
    for i, (model, summary) in enumerate(zip(models, summaries)):
        base = i == 0
        missing = summary.get("missing")
        params: dict[str, Any] = {"base": base, "href": str(model.get("url") or ""),
                                  "title": model.get("title") or f"{model.get('full_name', model['name'])} "
                                                                 f"({model['run_id']})"}
        if missing:
            params["note"] = f"outputs {missing}"
        else:
            shown_rel = relative and not base
            params["value"] = (("Δ " if shown_rel else "") + value_text(metric, summary.get("value"), shown_rel)
                               + (" overall" if base else ""))
            params["counts"] = list(summary.get("counts") or [])
        rel_here = relative and not base
        cell_params = {"kind": value_kind(metric), "relative": rel_here, "higherBetter": higher_is_better,
                       "hi": (base_scale or 1.0) if base and relative else scale, "base": base,
                       "missing": f"outputs {missing}" if missing else "–"}
        if mode == "instances":
            cell_params["pred"] = f"q{i}"
            if not base:
                cell_params["basePred"] = "q0"
        cols.append({"headerName": str(model["name"]), "colId": f"v{i}", "field": f"v{i}",
                     "headerComponentParams": {"innerHeaderComponent": "CmpHeader", **params},
                     "cellRenderer": "CmpBar", "cellRendererParams": cell_params,
                     "minWidth": max(model_column_width(len(models)) + (30 if mode == "instances" else 0),
                                     title_width(str(model["name"]), base)),
                     "flex": 1, "maxWidth": 320, "sortable": not missing,
                     **(number_filter if not missing else {"filter": False})})
    return cols


def rows_payload(rows: pd.DataFrame, n_models: int, *, mode: str, class_names: Sequence[str] = (),
                 previews: Mapping[str, tuple[str, str]] | None = None,
                 flags: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """One page of rows as JSON-ready dicts: only what the grid draws, floats rounded.

    ``previews``: instance id -> (kind, value); ``flags``: row key -> notes (for the
    flag marker). Instance rows carry each model's prediction as ``q<i>`` (class name).
    """
    out: list[dict[str, Any]] = []
    value_cols = [f"v{i}" for i in range(n_models)]
    values = rows[value_cols].to_numpy(np.float64) if len(rows) else np.zeros((0, n_models))
    preds = (rows[[f"p{i}" for i in range(n_models)]].to_numpy(np.float64)
             if mode == "instances" and len(rows) else None)
    names = list(class_names)
    for r, rec in enumerate(rows[["key", "name"] + (["count"] if "count" in rows.columns else [])]
                            .itertuples(index=False)):
        key = str(rec[0])
        row: dict[str, Any] = {"key": key, "name": str(rec[1])}
        if "count" in rows.columns:
            row["count"] = int(rec[2])
        for i in range(n_models):
            v = values[r, i]
            row[f"v{i}"] = None if not np.isfinite(v) else float(f"{v:.{PAYLOAD_DIGITS}g}")
        if preds is not None:
            for i in range(n_models):
                p = preds[r, i]
                row[f"q{i}"] = None if not np.isfinite(p) else (names[int(p)] if 0 <= int(p) < len(names)
                                                                else str(int(p)))
            kind_value = (previews or {}).get(key)
            if kind_value is not None:
                row["pk"], row["pv"] = kind_value
        notes = (flags or {}).get(key)
        if notes:
            row["flags"] = len(notes)
            row["flagNotes"] = " · ".join(notes)[:300]
        out.append(row)
    return out


def sort_spec(sort_model: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, bool]]:
    """AG Grid's ``sortModel`` as ((column, ascending), ...)."""
    return [(str(s["colId"]), s.get("sort") != "desc") for s in (sort_model or []) if s.get("colId")]


_NUMBER_OPS = {"greaterThan": ">", "greaterThanOrEqual": ">=", "lessThan": "<", "lessThanOrEqual": "<=",
               "equals": "==", "notEqual": "!="}


def filter_spec(filter_model: Mapping[str, Any] | None) -> list[tuple[str, str, Any]]:
    """AG Grid's ``filterModel`` as ``(column, op, value)`` filters for :func:`mlflow_cc.analysis.behaviours.page`.

    Number filters (one condition; ``inRange`` gives two) and text ``contains`` /
    ``equals``; anything else is ignored.
    """
    out: list[tuple[str, str, Any]] = []
    for col, spec in (filter_model or {}).items():
        if not isinstance(spec, Mapping):
            continue
        kind, ftype = spec.get("filterType"), spec.get("type")
        if kind == "number":
            try:
                if ftype == "inRange":
                    out += [(col, ">=", float(spec["filter"])), (col, "<=", float(spec["filterTo"]))]
                elif ftype in _NUMBER_OPS:
                    out.append((col, _NUMBER_OPS[ftype], float(spec["filter"])))
            except (KeyError, TypeError, ValueError):
                continue
        elif kind == "text" and spec.get("filter") not in (None, ""):
            if ftype == "equals":
                out.append((col, "==", str(spec["filter"])))
            else:
                out.append((col, "contains", str(spec["filter"])))
    return out


def changes_summary(models: Sequence[Mapping[str, Any]],
                    changes: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Per non-base model: its name and the most frequent base→model changes as text pairs."""
    out = []
    for model in models[1:]:
        items = changes.get(str(model["run_id"]), [])
        out.append({"name": str(model["name"]), "run_id": str(model["run_id"]),
                    "title": str(model.get("title") or model["run_id"]),
                    "items": [{"pair": f"{c['base']} → {c['model']}", "count": int(c["count"]),
                               "share": f"{100 * float(c['fraction']):.1f}%"} for c in items]})
    return out
