"""Hover text for a model: name, operation and parameters, metrics with change vs parent (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dash_app.figures.encoding import escape
from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest, ModelNode


def metric_order(forest: Forest, infos: Mapping[str, MetricInfo]) -> list[str]:
    """Primary metrics first, then the rest alphabetically."""
    names = forest.metric_names()
    return sorted(names, key=lambda n: (not info_for(infos, n).primary, n))


def change_text(value: float, parent: float | None, info: MetricInfo) -> str:
    """Change vs the parent: points for percentages, relative change otherwise."""
    if parent is None:
        return ""
    delta = value - parent
    if info.format.endswith("%"):
        return f" ({delta * 100:+.1f} pts)"
    if parent == 0:
        return "" if delta == 0 else f" ({delta:+.3g})"
    return f" ({delta / abs(parent):+.0%})"


def hover_text(node: ModelNode, parent: ModelNode | None, infos: Mapping[str, MetricInfo],
               order: list[str]) -> str:
    """One model's tooltip; every user string is escaped."""
    lines = [f"<b>{escape(node.name)}</b>"]
    if node.operation:
        lines.append(escape(node.label()))
        if parent is not None:
            lines.append(f"from {escape(parent.name)}")
    else:
        lines.append("base model")
    if node.status != "FINISHED":
        lines.append(f"status: {escape(node.status)}")
    for name in order:
        if name not in node.metrics:
            continue
        info = info_for(infos, name)
        v = node.metrics[name]
        pv = parent.metrics.get(name) if parent is not None else None
        lines.append(f"{escape(name)}: {escape(info.format_value(v))}{change_text(v, pv, info)}")
    for inp in node.inputs:
        lines.append(f"{escape(inp.get('role', 'input'))}: {escape(inp.get('run_id', '')[:8])}")
    return "<br>".join(lines)


def hover_texts(forest: Forest, infos: Mapping[str, MetricInfo],
                ids: Iterable[str] | None = None) -> dict[str, str]:
    """Tooltips keyed by run id, of ``ids`` (default: every model)."""
    order = metric_order(forest, infos)
    nodes = forest.nodes
    todo = nodes if ids is None else [r for r in ids if r in nodes]
    return {rid: hover_text(nodes[rid], nodes.get(nodes[rid].parent_id) if nodes[rid].parent_id else None,
                            infos, order) for rid in todo}
