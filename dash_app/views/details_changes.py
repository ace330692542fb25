"""Selection Details' *what changed*: per selected model, the operations from the selection's
common ancestor to it, in words (:func:`mlflow_cc.analysis.selection.changes.what_changed`).
Plain text only (Dash escapes it)."""

from __future__ import annotations

from collections.abc import Sequence

from dash import html

from mlflow_cc.analysis.selection.changes import what_changed
from mlflow_cc.read.lineage import Forest

#: Models listed; the rest are counted.
MAX_PATHS = 12


def block(forest: Forest, ids: Sequence[str]) -> html.Div:
    """``What changed from <ancestor>`` and one line per model: ``name: op → op``."""
    changes = what_changed(forest, ids)
    if changes.ancestor is not None:
        head = f"What changed from {changes.ancestor_name} (the common ancestor)"
    else:
        head = "What changed (no common ancestor: the models come from different base models)"
    items = [html.Li([html.Span(p.name, className="cc-changed-name", title=p.run_id), html.Span(": "),
                      html.Span(p.text(), className="cc-changed-ops")], className="cc-changed-item")
             for p in changes.paths[:MAX_PATHS]]
    if len(changes.paths) > MAX_PATHS:
        items.append(html.Li(f"… and {len(changes.paths) - MAX_PATHS} more", className="cc-muted"))
    return html.Div(id="ov-what-changed", className="cc-changed", children=[
        html.Div(head, className="cc-changed-head"), html.Ul(items, className="cc-changed-list")])
