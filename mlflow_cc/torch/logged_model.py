"""Log the model itself as an MLflow 3 logged model linked to its run (opt-in: ``Capture(log_model=True)``).

The registry's *Register model* (:mod:`mlflow_cc.track.register`) then points the model version at
it (``models:/<model_id>``) instead of the weights artifact. The model is saved with
``mlflow.pytorch.log_model`` in pickle format (any ``nn.Module``, pruned or quantized, without an
input example; loading it runs pickled code, as MLflow warns) with its pruning masks folded in.
"""

from __future__ import annotations

import inspect

import mlflow
import mlflow.pytorch
import torch
from torch import nn

from mlflow_cc.torch.effective import folded
from mlflow_cc.track.tracking import ModelRun


def log_pytorch_model(model_run: ModelRun, model: nn.Module, name: str = "model") -> str:
    """Log ``model`` under ``model_run`` with ``mlflow.pytorch.log_model``; returns the logged model's id."""
    # Created here so it lands in the run's experiment (log_model alone uses the active experiment).
    logged = model_run.client.create_logged_model(model_run.experiment_id, name=name,
                                                  source_run_id=model_run.run_id)
    kwargs = {}
    if "serialization_format" in inspect.signature(mlflow.pytorch.log_model).parameters:
        kwargs["serialization_format"] = "pickle"  # pt2 (the default) needs an input example and traces
    previous = mlflow.get_tracking_uri()
    if previous != model_run.tracking_uri:
        mlflow.set_tracking_uri(model_run.tracking_uri)  # log_model writes to the global store
    try:
        mlflow.pytorch.log_model(folded(model), name=name, model_id=logged.model_id, run_id=model_run.run_id,
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], **kwargs)
    finally:
        if previous != model_run.tracking_uri:
            mlflow.set_tracking_uri(previous)
    return logged.model_id
