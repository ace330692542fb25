"""The selected models as rows, and as CSV for download (pure)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_cc.read.lineage import Forest

#: Spreadsheet programs run cells starting with these as formulas.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def selection_rows(forest: Forest, ids: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per model: run_id, name, operation, parameters, parent, status, metrics."""
    rows = []
    for rid in ids:
        n = forest.nodes[rid]
        parent = forest.nodes[n.parent_id].name if n.parent_id else ""
        rows.append({"run_id": rid, "name": n.name, "operation": n.label(), "parent": parent,
                     "params": json.dumps(n.op_params, sort_keys=True, default=str),
                     "status": n.status, **n.metrics})
    return rows


def spreadsheet_safe(v: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a leading formula character gets a quote."""
    if isinstance(v, str) and v.startswith(FORMULA_START):
        return "'" + v
    return v


def selection_csv(forest: Forest, ids: Sequence[str], links: Mapping[str, str] | None = None) -> str:
    """CSV of the models' metrics (one row per model, one column per metric)."""
    rows = selection_rows(forest, ids)
    metrics = sorted({k for n in (forest.nodes[r] for r in ids) for k in n.metrics})
    fields = ["run_id", "name", "operation", "parent", "params", "status", *metrics, "mlflow_url"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        r["mlflow_url"] = (links or {}).get(r["run_id"], "")
        w.writerow({k: spreadsheet_safe(r.get(k, "")) for k in fields})
    return buf.getvalue()
