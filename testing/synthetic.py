"""Synthetic experiments with the shape of real compression studies (tests, benchmarks).

The metrics are made up (deterministic from a seed); the lineage, operations and
parameters follow the paper's first study task: a base model and 19 derived ones.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest
from mlflow_cc.track.tracking import (
    ModelRun,
    derive_model,
    log_base_model,
    set_metric_info,
)


@dataclass(frozen=True)
class Spec:
    """One derived model: key, parent key, operation, params."""

    key: str
    parent: str
    operation: str
    params: dict[str, Any]


#: The paper's first study task in miniature (base + 19 derived models).
STUDY_SPECS: list[Spec] = [
    Spec("q8", "base", "quantize", {"bits": 8, "method": "dynamic"}),
    *[Spec(f"mag{s}", "base", "prune", {"method": "global_magnitude", "sparsity": s / 100})
      for s in (30, 50, 70, 90)],
    *[Spec(f"grad{s}", "base", "prune", {"method": "global_gradient", "sparsity": s / 100})
      for s in (30, 50, 70, 90)],
    Spec("mag70_ft", "mag70", "finetune", {"epochs": 2, "lr": 0.001}),
    Spec("mag90_ft", "mag90", "finetune", {"epochs": 2, "lr": 0.001}),
    Spec("grad70_ft", "grad70", "finetune", {"epochs": 2, "lr": 0.001}),
    Spec("mag50_q", "mag50", "quantize", {"bits": 8, "method": "dynamic"}),
    Spec("mag50_cal", "mag50", "calibrate", {"batches": 8}),
    Spec("mag50_cal_q", "mag50_cal", "quantize", {"bits": 8, "method": "dynamic"}),
    Spec("mag70_ft_q", "mag70_ft", "quantize", {"bits": 8, "method": "dynamic"}),
    Spec("grad50_q", "grad50", "quantize", {"bits": 8, "method": "dynamic"}),
    Spec("grad50_cal", "grad50", "calibrate", {"batches": 8}),
    Spec("grad50_cal_q", "grad50_cal", "quantize", {"bits": 8, "method": "dynamic"}),
]


def _metrics(rng: random.Random, parent: dict[str, float] | None, spec: Spec | None) -> dict[str, float]:
    if parent is None:
        return {"accuracy": 0.97, contract.METRIC_SIZE: 400_000.0, contract.METRIC_PARAMS: 100_000.0,
                contract.METRIC_NONZERO: 100_000.0, contract.METRIC_SPARSITY: 0.0,
                contract.METRIC_LATENCY: 1.5}
    m = dict(parent)
    if spec is not None and spec.operation == "prune":
        s = float(spec.params["sparsity"])
        m[contract.METRIC_SPARSITY] = s
        m[contract.METRIC_NONZERO] = round(parent[contract.METRIC_PARAMS] * (1 - s))
        m["accuracy"] = max(0.05, parent["accuracy"] - 0.5 * s ** 4 - rng.uniform(0, 0.01))
        m[contract.METRIC_SIZE] = parent[contract.METRIC_SIZE] * (1 - 0.5 * s)
    elif spec is not None and spec.operation == "quantize":
        m[contract.METRIC_SIZE] = parent[contract.METRIC_SIZE] / 4
        m["accuracy"] = parent["accuracy"] - rng.uniform(0, 0.01)
        m[contract.METRIC_LATENCY] = parent[contract.METRIC_LATENCY] * 0.7
    else:
        m["accuracy"] = min(0.99, parent["accuracy"] + rng.uniform(0, 0.04))
    return {k: round(v, 6) for k, v in m.items()}


def build_study_shape(experiment: str, *, seed: int = 0, tracking_uri: str | None = None
                      ) -> dict[str, tuple[str, Spec | None, dict[str, float]]]:
    """Log the study through the public API; returns key -> (run_id, spec, metrics)."""
    rng = random.Random(seed)
    set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment=experiment,
                    tracking_uri=tracking_uri)
    out: dict[str, tuple[str, Spec | None, dict[str, float]]] = {}
    with log_base_model("cnn-base", experiment=experiment, tracking_uri=tracking_uri) as base:
        metrics = _metrics(rng, None, None)
        base.log_metrics(metrics)
        out["base"] = (base.run_id, None, metrics)
    runs: dict[str, ModelRun | str] = {"base": base}
    for spec in STUDY_SPECS:
        _, _, parent_metrics = out[spec.parent]
        with derive_model(runs[spec.parent], spec.operation, spec.params, name=spec.key,
                          tracking_uri=tracking_uri) as child:
            metrics = _metrics(rng, parent_metrics, spec)
            child.log_metrics(metrics)
        runs[spec.key] = child
        out[spec.key] = (child.run_id, spec, metrics)
    return out


@dataclass(frozen=True)
class RandomModel:
    """One model of a random forest: its index, its parent's index (None: a base model),
    its step, the operation spec (None for a base model) and its metrics."""

    index: int
    parent: int | None
    step: int
    spec: Spec | None
    metrics: dict[str, float]


def random_models(n: int, *, max_depth: int = 6, roots: int = 4, seed: int = 0) -> list[RandomModel]:
    """A random compression forest of ``n`` models (the one generator tests and benchmarks share).

    ``roots`` base models, then each model derives from one of the last 200 whose depth is below
    ``max_depth``: prune/quantize/finetune/calibrate with parameters, the built-in metrics and
    accuracy. Deterministic for a seed.
    """
    rng = random.Random(seed)
    ops = [("prune", lambda: {"method": rng.choice(["global_magnitude", "global_gradient"]),
                              "sparsity": rng.choice([0.3, 0.5, 0.7, 0.9])}),
           ("quantize", lambda: {"bits": rng.choice([8, 4])}),
           ("finetune", lambda: {"epochs": rng.choice([1, 2, 4])}),
           ("calibrate", lambda: {"batches": rng.choice([4, 8])})]
    out: list[RandomModel] = []
    for i in range(n):
        if i < roots or not out:
            out.append(RandomModel(i, None, 0, None, _metrics(rng, None, None)))
            continue
        candidates = [m.index for m in out[-200:] if m.step < max_depth]
        parent = out[rng.choice(candidates or list(range(min(roots, len(out)))))]
        op, params = rng.choice(ops)
        spec = Spec(str(i), str(parent.index), op, params())
        out.append(RandomModel(i, parent.index, parent.step + 1, spec, _metrics(rng, parent.metrics, spec)))
    return out


def random_forest(n: int, *, max_depth: int = 6, roots: int = 4, seed: int = 0) -> Forest:
    """:func:`random_models` as an in-memory :class:`Forest` (run ids ``run00000``...), no store."""
    nodes = [ModelNode(f"run{m.index:05d}", f"model-{m.index}", "1",
                       declared_parent_id=None if m.parent is None else f"run{m.parent:05d}",
                       operation=m.spec.operation if m.spec else None,
                       op_params=dict(m.spec.params) if m.spec else {}, start_time=m.index,
                       metrics=dict(m.metrics))
             for m in random_models(n, max_depth=max_depth, roots=roots, seed=seed)]
    return build_forest(nodes)


def build_random_forest(client: MlflowClient, experiment_id: str, n: int, *, max_depth: int = 6,
                        roots: int = 4, seed: int = 0) -> list[str]:
    """Write :func:`random_models` to a store fast (bare client calls, same tags as the API writes).

    Returns the run ids in creation order.
    """
    ids: list[str] = []
    t0 = int(time.time() * 1000)
    for m in random_models(n, max_depth=max_depth, roots=roots, seed=seed):
        spec, metrics = m.spec, m.metrics
        tags = {contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION), contract.TAG_KIND: contract.KIND_MODEL,
                contract.TAG_STEP: str(m.step)}
        if m.parent is not None and spec is not None:
            tags.update({contract.TAG_PARENT: ids[m.parent], contract.TAG_OPERATION: spec.operation,
                         contract.TAG_OPERATION_PARAMS: json.dumps(spec.params, sort_keys=True)})
        run = client.create_run(experiment_id, run_name=f"model-{m.index}", tags=tags, start_time=t0 + m.index)
        params = [Param(contract.PARAM_OPERATION_PREFIX + k, str(v)) for k, v in (spec.params if spec else {}).items()]
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, t0, 0) for k, v in metrics.items()],
                         params=params, tags=[RunTag("note", "synthetic")])
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        ids.append(run.info.run_id)
    return ids
