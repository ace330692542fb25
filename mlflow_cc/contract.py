"""The storage contract: every key mlflow-cc reads or writes in an MLflow store.

This module is the single place where tag keys, param names, metric names and
artifact paths are defined. A script that never imports the logging helper can
still produce a tree the reader understands by writing the same keys:

* the parent link is MLflow's own ``mlflow.parentRunId`` tag (so the MLflow UI
  nests the runs);
* everything of ours is namespaced under ``mlflow_cc.``;
* values that carry structure (operation parameters, extra inputs, metric
  metadata) are JSON strings.

The README's "Storage contract" section describes the same keys for users.
"""

from __future__ import annotations

import re
from typing import Final

#: Bumped when the meaning of a key changes. The reader accepts runs without it
#: (plain MLflow runs) and any version <= this one. Version 2: ``outputs.parquet`` holds one of
#: :data:`OUTPUT_KINDS` (version-1 outputs, without the kind, are classification outputs).
SCHEMA_VERSION: Final = 2

PREFIX: Final = "mlflow_cc."

# --- run tags ---------------------------------------------------------------
#: MLflow's own parent link; the MLflow UI nests runs by it.
TAG_PARENT: Final = "mlflow.parentRunId"
#: MLflow's run name tag (the reader labels plain runs by it).
TAG_RUN_NAME: Final = "mlflow.runName"
TAG_SCHEMA: Final = PREFIX + "schema_version"
#: What the run is: "model" (default) or "dataset" (shared previews, not a model).
TAG_KIND: Final = PREFIX + "kind"
#: Name of the operation that made this model from its parent ("prune", "quantize").
#: Absent on root (base) models.
TAG_OPERATION: Final = PREFIX + "operation"
#: JSON object of the operation's parameters, values typed (int/float/bool/str/null).
TAG_OPERATION_PARAMS: Final = PREFIX + "operation_params"
#: Depth in the lineage: 0 for a base model, parent's step + 1 otherwise.
TAG_STEP: Final = PREFIX + "step"
#: JSON list of extra lineage inputs: [{"run_id": "...", "role": "teacher"}, ...].
TAG_INPUTS: Final = PREFIX + "inputs"
#: Why a run failed ("ValueError: ..."); set together with status FAILED.
TAG_FAILURE: Final = PREFIX + "failure_reason"
#: Name of the evaluation dataset whose outputs the run logged.
TAG_DATASET: Final = PREFIX + "dataset"
#: Run id of the dataset run that holds the dataset's shared previews/metadata.
TAG_DATASET_RUN: Final = PREFIX + "dataset_run_id"
#: What the run's outputs artifact holds: one of :data:`OUTPUT_KINDS` (also in the file's metadata).
TAG_OUTPUT_KIND: Final = PREFIX + "output_kind"
#: Prefix of review flags: ``mlflow_cc.flag.<id>`` = JSON {"target", "note", "user", "time"}.
TAG_FLAG_PREFIX: Final = PREFIX + "flag."

# --- experiment tags ----------------------------------------------------------
#: One experiment tag per metric, ``mlflow_cc.metric.<name>`` = JSON
#: {"direction": "max"|"min", "unit": str, "format": str, "primary": bool}.
#: One tag per metric (not one JSON blob) so concurrent writers never overwrite each other.
EXP_TAG_METRIC_PREFIX: Final = PREFIX + "metric."

# --- params ----------------------------------------------------------------
#: Operation parameters are also logged as MLflow params ``op.<name>`` so they
#: show in the MLflow UI; the typed JSON tag above is the source of truth.
PARAM_OPERATION_PREFIX: Final = "op."

# --- metric names -------------------------------------------------------------
METRIC_SIZE: Final = "size_bytes"  # serialized state dict, bytes
METRIC_PARAMS: Final = "param_count"  # number of parameters
METRIC_NONZERO: Final = "nonzero_count"  # parameters that are not exactly zero
#: Bytes of the nonzero stored values (plus quantization scales): what pruning saves with sparse storage.
METRIC_NONZERO_BYTES: Final = "nonzero_bytes"
METRIC_SPARSITY: Final = "sparsity"  # 1 - nonzero/params, in [0, 1]
METRIC_LATENCY: Final = "latency_ms"  # median wall time of one forward pass, milliseconds

#: Metadata for the built-in metrics; user metrics default to higher-is-better.
BUILTIN_METRICS: Final[dict[str, dict[str, object]]] = {
    METRIC_SIZE: {"direction": "min", "unit": "B", "format": "bytes", "primary": False},
    METRIC_PARAMS: {"direction": "min", "unit": "", "format": ",d", "primary": False},
    METRIC_NONZERO: {"direction": "min", "unit": "", "format": ",d", "primary": False},
    METRIC_NONZERO_BYTES: {"direction": "min", "unit": "B", "format": "bytes", "primary": False},
    METRIC_SPARSITY: {"direction": "max", "unit": "", "format": ".1%", "primary": False},
    METRIC_LATENCY: {"direction": "min", "unit": "ms", "format": ".2f", "primary": False},
}

# --- artifact paths (relative to the run's artifact root) -------------------
ARTIFACT_ROOT: Final = "mlflow_cc"
#: Per-instance outputs: instance_id, label, prediction, prob_<k>/logit_<k> columns.
ARTIFACT_OUTPUTS: Final = ARTIFACT_ROOT + "/outputs.parquet"
#: Per-module summaries: module, tensor, shape, numel, zeros, min, max, mean, std.
ARTIFACT_LAYER_SUMMARY: Final = ARTIFACT_ROOT + "/layers/summary.parquet"
#: Effective (pruned, dequantized) weights, one tensor per parameter name.
ARTIFACT_WEIGHTS: Final = ARTIFACT_ROOT + "/layers/weights.safetensors"
#: Sampled activations per module, one tensor per module name.
ARTIFACT_ACTIVATIONS: Final = ARTIFACT_ROOT + "/layers/activations.safetensors"
#: On a dataset run: per-instance metadata (instance_id, label, class name, subgroups).
ARTIFACT_DATASET_INSTANCES: Final = ARTIFACT_ROOT + "/dataset/instances.parquet"
#: On a dataset run: previews (instance_id, kind "image"|"text", value: PNG base64 or text).
ARTIFACT_DATASET_PREVIEWS: Final = ARTIFACT_ROOT + "/dataset/previews.parquet"

# --- outputs kinds (outputs.parquet, schema version 3) --------------------------
#: ``classification``: label, prediction, logits; ``generation``: prompt, generated text, references,
#: teacher-forced reference scores; ``regression``: prediction and target values; ``embedding``: a vector.
OUTPUT_KINDS: Final = ("classification", "generation", "regression", "embedding")
#: 2: the kind in the schema metadata; 3: classification logits as one fixed-size binary value per
#: row (K little-endian float32) instead of a list of float32 (earlier files still read).
OUTPUTS_SCHEMA_VERSION: Final = 3
#: Parquet schema metadata keys of ``outputs.parquet`` (absent in version-1 files: classification).
OUTPUTS_META_KIND: Final = PREFIX + "output_kind"
OUTPUTS_META_VERSION: Final = PREFIX + "outputs_schema_version"
#: A fingerprint of the file's ``instance_id`` column (since version 3): readers share equal id columns.
OUTPUTS_META_IDS: Final = PREFIX + "instance_ids_digest"

KIND_MODEL: Final = "model"
KIND_DATASET: Final = "dataset"

#: Operation names: a letter, then letters, digits, space, ``_``, ``-`` or ``.``; 64 at most.
OPERATION_NAME_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9 _.\-]{0,63}$")
#: Parameter names: like Python identifiers plus ``.`` and ``-``; 64 at most.
PARAM_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
