"""The Behaviours grid's server side: grid identity, the rows of one block (sort, filter, page), labels, the prediction-changes panel.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dash import (
    html,
)

from dash_app.comparison import BehaviourSet, Drill
from dash_app.figures import behaviours as fig
from dash_app.source import DataSource
from dash_app.views import behaviours_significance as significance
from dash_app.views.generation_rows import add_answers
from mlflow_cc import contract
from mlflow_cc.analysis.behaviours import registered_metrics
from mlflow_cc.track.flags import Flag

GRID = "cmp-beh-grid"


#: Rows per block the grid asks for (one server round trip).
BLOCK = 100


ROW_OPTIONS = [{"label": "classes", "value": "classes"}, {"label": "subgroups", "value": "subgroups"},
               {"label": "instances", "value": "instances"}]


def _metric_options() -> list[dict[str, str]]:
    """Every registered per-instance metric of every outputs kind (registered before the app starts):
    a metric named in the URL is an option before the compared models' kind is known."""
    names = dict.fromkeys(name for kind in contract.OUTPUT_KINDS for name, spec in registered_metrics(kind).items()
                          if spec.per_instance)
    return [{"label": fig.metric_label(name), "value": name} for name in names]


def _drill(data: Any) -> Drill | None:
    return Drill.parse(data) if isinstance(data, str) else None


def _grid_key(cmp: dict[str, Any], rows: str, metric: str, rel: str, drill: str | None, flagged: bool,
              *extra: Any) -> str:
    raw = json.dumps([cmp.get("experiment"), cmp.get("base"), [m["run_id"] for m in cmp.get("models", [])],
                      rows, metric, rel, drill, flagged, *extra])
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def _initial_sort_filter(state: dict[str, Any] | None, current: dict[str, Any] | None,
                         key: str) -> tuple[list[tuple[str, bool]], dict[str, Any]]:
    """Sort and filter from the URL for the first grid of a page load; a later grid starts plain."""
    if current is not None or not state:
        return [], {}
    sort = []
    for part in (state.get("bsort") or "").split(","):
        col, _, direction = part.partition(":")
        if col:
            sort.append((col, direction != "desc"))
    try:
        filters = json.loads(state["bfilter"]) if state.get("bfilter") else {}
    except ValueError:
        filters = {}
    return sort, filters if isinstance(filters, dict) else {}


def _rows_response(source: DataSource, bctx: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The ``getRowsResponse`` for one ``getRowsRequest``: a block of rows and the filtered row count."""
    comparisons = source.comparisons(bctx["experiment"])
    data = comparisons.behaviours(bctx["base"], bctx["run_ids"])
    start = int(request.get("startRow") or 0)
    end = int(request.get("endRow") or start + BLOCK)
    filters = fig.filter_spec(request.get("filterModel"))
    drill = Drill.parse(bctx.get("drill"))
    flag_notes: dict[str, list[str]] = {}
    if bctx["rows"] == "instances":
        flags = source.flags(bctx["experiment"]).flags(bctx["run_ids"])
        flag_notes = _flag_index(flags, bctx["run_ids"])
        if bctx.get("flagged"):
            filters.append(("key", "in", list(flag_notes)))
    filters += significance.row_filters(data, bctx)
    result = data.page(bctx["rows"], bctx["metric"], bctx["relative"], drill=drill,
                       sort=fig.sort_spec(request.get("sortModel")), filters=filters,
                       offset=start, limit=max(end - start, 0))
    previews = data.previews(result.rows["key"].astype(str).tolist()) if bctx["rows"] == "instances" else None
    class_names = data.behaviours.class_names if data.behaviours is not None else []
    rows = fig.rows_payload(result.rows, len(bctx["run_ids"]), mode=bctx["rows"], class_names=class_names,
                            previews=previews, flags=flag_notes)
    significance.decorate_page(rows, data, bctx)
    if bctx["rows"] == "instances" and data.kind != "classification":
        add_answers(rows, result.rows, len(bctx["run_ids"]))  # answers with the words changed vs the base
    return {"rowData": rows, "rowCount": result.total}


def _class_label(data: BehaviourSet, value: str) -> str:
    names = data.behaviours.class_names if data.behaviours is not None else []
    try:
        i = int(value)
    except ValueError:
        return value
    return names[i] if 0 <= i < len(names) and names[i] != value else value


def _changes_children(changes: list[dict[str, Any]], wide: bool = False) -> list[Any]:
    """The changes panel; ``wide``: answers (generation) get wider columns and the full pair as a tooltip."""
    out: list[Any] = []
    for model in changes:
        items = [html.Li([html.Span(c["pair"], className="cmp-change-pair", title=c["pair"]),
                          html.Span(f"{c['count']} ({c['share']})", className="cmp-muted")])
                 for c in model["items"]] or [html.Li("no changed predictions", className="cmp-muted")]
        out.append(html.Div(style={"minWidth": "170px", "maxWidth": "360px" if wide else "220px"}, children=[
            html.Div(model["name"], className="cmp-change-model", title=model["title"]),
            html.Ul(items, className="cmp-changes")]))
    return out or [html.Span("only the base is selected", className="cmp-muted")]


def _grid_height(n_rows: int, rows: str) -> int:
    """Pixels: the whole table when it is short (classes, subgroups), else a scrolling 460."""
    row_height = 34 if rows == "instances" else 30
    return int(min(max(62 + row_height * max(n_rows, 2) + 18, 160), 460))

def _flag_index(flags: list[Flag], run_ids: list[str]) -> dict[str, list[str]]:
    """Instance id -> notes of the flags on it (any compared model)."""
    wanted = set(run_ids)
    out: dict[str, list[str]] = {}
    for f in flags:
        if f.run_id in wanted and f.instance_id is not None:
            out.setdefault(f.instance_id, []).append(f"{f.user}: {f.note}")
    return out
