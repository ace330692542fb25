"""Evaluate a model and log what comparison needs: outputs, layers and activations.

A :class:`Capture` says what to log about every model of an experiment (the same evaluation set,
the same activation sample); :meth:`Capture.log` logs it on one model's run::

    capture = Capture(EvalSet("digits-test", ids, x_test, y_test, class_names=names),
                      metrics=lambda model, out: {"accuracy": float((out["logits"].argmax(1) == y).mean())},
                      sample_input=x_test[:64])
    with cc.log_base_model("cnn", experiment="digits") as base:
        capture.log(base, model)

The pieces: :mod:`~mlflow_cc.torch.evalset` (evaluation), :mod:`~mlflow_cc.torch.layers`
(summaries and weights), :mod:`~mlflow_cc.torch.activations` (hooks on a fixed sample).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from mlflow_cc import artifacts
from mlflow_cc.torch.activations import ACTIVATION_CAP, ACTIVATION_INSTANCES
from mlflow_cc.torch.effective import folded
from mlflow_cc.torch.evalset import EvalSet, evaluate
from mlflow_cc.torch.layers import log_layers
from mlflow_cc.torch.measure import efficiency
from mlflow_cc.track.tracking import ModelRun

#: ``metrics(model, outputs)`` -> user metrics; ``outputs`` holds the evaluation arrays
#: (``outputs["logits"]`` is (N, K)), or is None when the capture has no evaluation set.
MetricsFn = Callable[[nn.Module, "dict[str, np.ndarray] | None"], Mapping[str, float]]

__all__ = ["Capture", "EvalSet", "MetricsFn", "evaluate", "log_layers"]


@dataclass
class Capture:
    """What to log about each model of an experiment; :meth:`log` logs it on one model run.

    ``metrics(model, outputs)``: user metrics (e.g. accuracy), called after evaluation.
    ``sample_input``: input of the latency measurement (``latency_ms``); none: no latency.
    ``outputs``/``layers``/``activations``: which artifacts to log (outputs and activations need
    ``eval_set``). ``weights_exclude``: fnmatch patterns of tensors summarized but not stored.
    ``log_model``: also log the model itself (``mlflow.pytorch.log_model``, an MLflow 3 logged model
    linked to the run; see :mod:`mlflow_cc.torch.logged_model`).
    """

    eval_set: EvalSet | None = None
    metrics: MetricsFn | None = None
    sample_input: Any | None = None
    outputs: bool = True
    layers: bool = True
    activations: bool = True
    activation_instances: int = ACTIVATION_INSTANCES
    activation_cap: int = ACTIVATION_CAP
    seed: int = 0
    weights_exclude: Sequence[str] = ()
    latency_runs: int = 10
    progress: bool = True
    log_model: bool = False
    _dataset_runs: dict[str, str] = field(default_factory=dict, repr=False)

    def log(self, model_run: ModelRun, model: nn.Module) -> dict[str, float]:
        """Measure and evaluate ``model`` and log everything requested on ``model_run``.

        Returns the metrics logged (efficiency metrics under contract names plus user metrics).
        The model is not changed (its train/eval mode is restored). A pruned model is measured and
        evaluated with its masks folded into a copy, as it would be deployed: the pruning hooks
        would otherwise add a weight-times-mask product to every forward pass (and to latency).
        """
        model = folded(model)
        metrics = efficiency(model, self.sample_input, runs=self.latency_runs)
        outputs = evaluate(model, self.eval_set, progress=self.progress) if self.eval_set is not None else None
        if self.metrics is not None:
            metrics.update({k: float(v) for k, v in self.metrics(model, outputs).items()})
        model_run.log_metrics(metrics)
        if outputs is not None and self.outputs:
            self.log_outputs(model_run, outputs)
        if self.layers:
            log_layers(model_run, model, eval_set=self.eval_set, activations=self.activations,
                       activation_instances=self.activation_instances,
                       activation_cap=self.activation_cap, seed=self.seed,
                       weights_exclude=self.weights_exclude)
        if self.log_model:
            from mlflow_cc.torch.logged_model import log_pytorch_model

            log_pytorch_model(model_run, model)
        return metrics

    def log_outputs(self, model_run: ModelRun, outputs: dict[str, np.ndarray]) -> None:
        """Log evaluation ``outputs`` (from :func:`evaluate`) and link the shared dataset run."""
        eval_set = self.eval_set
        assert eval_set is not None
        extra = dict(eval_set.scores(outputs)) if eval_set.scores is not None else None
        artifacts.log_outputs(model_run.run_id, list(eval_set.instance_ids), outputs["logits"],
                                eval_set.labels, dataset=eval_set.name,
                                dataset_run_id=self.dataset_run(model_run),
                                extra=extra, client=model_run.client)

    def dataset_run(self, model_run: ModelRun) -> str:
        """The run id of the eval set's dataset run in ``model_run``'s experiment, created on first
        use: its metadata and previews are stored once and shared by every model."""
        eval_set = self.eval_set
        assert eval_set is not None
        key = f"{model_run.tracking_uri}|{model_run.experiment_id}"
        if key not in self._dataset_runs:
            self._dataset_runs[key] = artifacts.log_dataset(
                model_run.experiment_id, eval_set.name, eval_set.instances_table(), eval_set.previews,
                class_names=eval_set.class_names, client=model_run.client)
        return self._dataset_runs[key]
