"""The forest as indented text lines (for ``mlflow-cc tree``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mlflow_cc.metric_info import MetricInfo, info_for
from mlflow_cc.read.lineage import Forest, ModelNode, default_model_name


def shown_metrics(forest: Forest, infos: Mapping[str, MetricInfo]) -> list[str]:
    """Primary metrics if any are declared, else up to four metrics the models share."""
    names = forest.metric_names()
    primary = [n for n in names if infos.get(n) and infos[n].primary]
    return primary or names[:4]


def forest_lines(forest: Forest, infos: Mapping[str, MetricInfo]) -> Iterator[str]:
    metrics = shown_metrics(forest, infos)
    for node in forest.walk():
        yield "  " * node.depth + _describe(node, metrics, infos)
    if forest.warnings:
        yield ""
        yield f"{len(forest.warnings)} warning(s):"
        for w in forest.warnings:
            yield f"  [{w.kind}] {w.message}"
    yield f"{len(forest)} model(s), {len(forest.roots)} root(s)"


def _describe(node: ModelNode, metrics: list[str], infos: Mapping[str, MetricInfo]) -> str:
    parts = [node.label()]
    if node.operation is None or node.name != default_model_name(node.operation, node.op_params):
        parts.insert(0, node.name)  # a name the user chose says something the label does not
    values = [f"{m}={info_for(infos, m).format_value(node.metrics[m])}" for m in metrics if m in node.metrics]
    if values:
        parts.append(" ".join(values))
    marks = [node.status] if node.status != "FINISHED" else []
    if node.external:
        marks.append(f"external: experiment {node.experiment_id}")
    if node.inputs:
        marks.append("inputs: " + ", ".join(f"{i['role']}={i['run_id'][:8]}" for i in node.inputs))
    if marks:
        parts.append("[" + "; ".join(marks) + "]")
    return "  ".join(parts) + f"  ({node.run_id[:8]})"
