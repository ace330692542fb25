"""MLflow runs as model nodes: the tags and params of the mlflow-cc contract, read leniently.

A run whose lineage tags are unreadable still becomes a node; what was wrong is kept in
its ``_problems`` tag and reported as a ``bad_tag`` warning by the reader.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.entities import Run

from mlflow_cc import contract
from mlflow_cc.read.lineage import ModelNode
from mlflow_cc.read.rest_search import RunFields


def node_from_run(run: Run) -> ModelNode | None:
    """Turn an MLflow run into a model node; ``None`` for a dataset run."""
    return node_from_fields(run_fields(run))


def run_fields(run: Run) -> RunFields:
    """The fields of an MLflow ``Run`` the forest needs (what the lean REST path parses directly)."""
    info = run.info
    return RunFields(run_id=info.run_id, run_name=info.run_name or "", experiment_id=info.experiment_id,
                     status=info.status, start_time=info.start_time or 0, end_time=info.end_time,
                     lifecycle_stage=info.lifecycle_stage, tags=dict(run.data.tags),
                     params=dict(run.data.params), metrics=dict(run.data.metrics))


def node_from_fields(run: RunFields) -> ModelNode | None:
    """Turn one run's fields into a model node; ``None`` for a dataset run."""
    tags = run.tags
    if tags.get(contract.TAG_KIND) == contract.KIND_DATASET:
        return None
    problems: list[str] = []
    op_params: dict[str, Any] = {}
    raw_params = tags.get(contract.TAG_OPERATION_PARAMS)
    params = run.params
    if raw_params is not None:
        try:
            parsed = json.loads(raw_params)
            if not isinstance(parsed, dict):
                raise TypeError("not a JSON object")
            op_params = parsed
        except (ValueError, TypeError) as exc:
            problems.append(f"operation parameters tag is unreadable ({exc})")
    if not op_params:  # written by hand as op.<name> params only
        op_params = {k[len(contract.PARAM_OPERATION_PREFIX):]: _typed(v) for k, v in params.items()
                     if k.startswith(contract.PARAM_OPERATION_PREFIX) and k != "op.name"}
    inputs: list[dict[str, str]] = []
    if contract.TAG_INPUTS in tags:
        try:
            parsed_inputs = json.loads(tags[contract.TAG_INPUTS])
            inputs = [{"run_id": str(i["run_id"]), "role": str(i.get("role", "input"))}
                      for i in parsed_inputs]
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"extra inputs tag is unreadable ({exc})")
    step: int | None = None
    if contract.TAG_STEP in tags:
        try:
            step = int(tags[contract.TAG_STEP])
        except ValueError:
            problems.append(f"step tag {tags[contract.TAG_STEP]!r} is not an integer")
    node = ModelNode(
        run_id=run.run_id,
        name=run.run_name or tags.get(contract.TAG_RUN_NAME) or run.run_id[:8],
        experiment_id=run.experiment_id,
        declared_parent_id=tags.get(contract.TAG_PARENT) or None,
        operation=tags.get(contract.TAG_OPERATION) or params.get("op.name") or None,
        op_params=op_params,
        step=step,
        inputs=inputs,
        metrics=run.metrics,
        params={k: v for k, v in params.items() if not k.startswith(contract.PARAM_OPERATION_PREFIX)},
        tags=dict(tags),
        status=run.status,
        start_time=run.start_time or 0,
        end_time=run.end_time,
        failure_reason=tags.get(contract.TAG_FAILURE),
    )
    if problems:
        node.tags["_problems"] = "; ".join(problems)
    return node


def _typed(value: str) -> Any:
    """Best-effort typing of a string param (``"0.5"`` -> 0.5) for sorting siblings."""
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)
