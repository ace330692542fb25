"""mlflow-cc: Compress and Compare for MLflow.

Write side: :func:`log_base_model`, :func:`derive_model`, :func:`set_metric_info`.
Read side: :class:`ExperimentReader` builds the provenance :class:`Forest`.
One line for existing scripts: :func:`autolog` records their compression calls.
"""

from __future__ import annotations

from mlflow_cc.autolog import autolog, autolog_name
from mlflow_cc.errors import ArtifactError, LineageError, MlflowCCError, OperationError
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.notebook import show
from mlflow_cc.read.lineage import Forest, LineageWarning, ModelNode, build_forest
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.track.register import Registration, register_model
from mlflow_cc.track.tracking import (
    ModelRun,
    derive_model,
    log_base_model,
    set_metric_info,
)

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ExperimentReader",
    "Forest",
    "LineageError",
    "LineageWarning",
    "MetricInfo",
    "MlflowCCError",
    "ModelNode",
    "ModelRun",
    "OperationError",
    "Registration",
    "autolog",
    "autolog_name",
    "build_forest",
    "derive_model",
    "log_base_model",
    "register_model",
    "set_metric_info",
    "show",
]
