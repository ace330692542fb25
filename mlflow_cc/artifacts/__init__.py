"""Artifact formats: what a model run stores for comparison, at the numpy level (no torch, no Dash).

Three artifacts, at the paths of :mod:`mlflow_cc.contract`:

* **outputs** (:mod:`.outputs`, one per model run): per-instance outputs on an evaluation
  set, Parquet of one kind (schema metadata ``mlflow_cc.output_kind``, run tag of the same
  name; version-1 files without it are classification): classification (:func:`log_outputs`:
  ``instance_id`` (string), ``label`` (int64, nullable), ``prediction`` (int64), ``logits``
  (fixed-size binary, one little-endian float32 per class; a list of float32 before schema
  version 3), ``score_<name>`` (float64, optional per-instance scores)), generation (:func:`log_generation_outputs`), regression
  (:func:`log_regression_outputs`) and embedding (:func:`log_embedding_outputs`);
* **dataset** (:mod:`.dataset`, one dataset run per experiment and dataset name): per-instance
  metadata (``instance_id``, ``label``, ``label_name``, ``meta_<attribute>``) and previews
  (``instance_id``, ``kind`` "image"|"text", ``value``: base64 PNG or text), stored once and
  shared by every run that evaluates on the dataset;
* **layers** (:mod:`.layers`, one per model run): a per-tensor summary table (Parquet), the
  effective weights and sampled activations (safetensors, float32), read one tensor at a time.

Every write is complete-or-absent: files are written to a temp folder first and handed to
MLflow in one ``log_artifact(s)`` call, after validation. Nothing is pickled. Readers raise
:class:`~mlflow_cc.errors.ArtifactError` with reason "not logged", "unreadable" or "too large"
(see :mod:`.files`, the one door to artifact files).

May import: `mlflow_cc.contract`, `mlflow_cc.errors` only.
"""

from mlflow_cc.artifacts.answers import exact_match, normalize_answer, token_f1
from mlflow_cc.artifacts.dataset import (
    CLASS_NAMES_KEY,
    PREVIEW_MAX_SIDE,
    DatasetInfo,
    Preview,
    find_dataset_run,
    image_preview,
    load_dataset,
    log_dataset,
)
from mlflow_cc.artifacts.generation_outputs import log_generation_outputs
from mlflow_cc.artifacts.layers import (
    SAMPLE_ABOVE,
    SAMPLE_SIZE,
    SUMMARY_COLUMNS,
    TENSOR_KINDS,
    TensorFile,
    load_layer_summary,
    log_layers,
    open_tensors,
    sample_positions,
    sample_weights,
    summarize_tensor,
)
from mlflow_cc.artifacts.output_kinds import GenerationData, Outputs
from mlflow_cc.artifacts.outputs import load_outputs, log_outputs
from mlflow_cc.artifacts.value_outputs import (
    log_embedding_outputs,
    log_regression_outputs,
)

__all__ = [
    "CLASS_NAMES_KEY",
    "PREVIEW_MAX_SIDE",
    "SUMMARY_COLUMNS",
    "TENSOR_KINDS",
    "DatasetInfo",
    "GenerationData",
    "Outputs",
    "Preview",
    "TensorFile",
    "exact_match",
    "find_dataset_run",
    "image_preview",
    "load_dataset",
    "load_layer_summary",
    "load_outputs",
    "log_dataset",
    "log_embedding_outputs",
    "log_generation_outputs",
    "log_layers",
    "log_outputs",
    "log_regression_outputs",
    "normalize_answer",
    "open_tensors",
    "summarize_tensor",
    "token_f1",
]
__all__ += ["SAMPLE_ABOVE", "SAMPLE_SIZE", "sample_positions", "sample_weights"]
