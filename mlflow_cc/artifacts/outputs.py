"""Per-instance outputs of one model run on an evaluation set (``outputs.parquet``): write, validate, read.

Classification outputs are written here; the other kinds by :mod:`.generation_outputs` and
:mod:`.value_outputs`. :func:`load_outputs` reads every kind: the kind is in the file's schema
metadata (schema version 2); a version-1 file without it holds classification outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.artifacts.files import artifact_path, get_run
from mlflow_cc.artifacts.generation_outputs import read_generation
from mlflow_cc.artifacts.output_kinds import (
    CLASSIFICATION,
    EMBEDDING,
    GENERATION,
    REGRESSION,
    Outputs,
    score_columns,
    table_kind,
    write_outputs,
)
from mlflow_cc.artifacts.tables import (
    _instance_ids,
    _int_vector,
    _label_array,
    _read_parquet,
    _require_finite,
)
from mlflow_cc.artifacts.value_outputs import read_embedding, read_regression
from mlflow_cc.errors import ArtifactError


def log_outputs(run_id: str, instance_ids: Sequence[str], logits: np.ndarray,
                labels: np.ndarray | None = None, *, predictions: np.ndarray | None = None,
                dataset: str | None = None, dataset_run_id: str | None = None,
                extra: Mapping[str, np.ndarray] | None = None, allow_nonfinite: bool = False,
                client: MlflowClient | None = None) -> None:
    """Log a model's per-instance outputs on an evaluation set to run ``run_id``.

    ``logits``: (N, K) raw scores (logits or log-probabilities; softmax is applied by
    the analysis). ``labels``: (N,) true class indices, negative or masked = unknown.
    ``predictions``: (N,) class indices, default ``argmax(logits)``. ``extra``:
    per-instance float scores stored as ``score_<name>``. ``dataset`` and
    ``dataset_run_id`` name the dataset (see :func:`log_dataset`) and go in run tags.
    Raises ``ValueError`` for inconsistent shapes, duplicate ids or non-finite values
    (unless ``allow_nonfinite``: a broken model's NaN outputs, kept on purpose).
    """
    client = client or MlflowClient()
    ids = _instance_ids(instance_ids)
    n = len(ids)
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape (N={n}, K>=1), not {logits.shape}")
    logits32 = np.ascontiguousarray(logits, dtype=np.float32)
    if not allow_nonfinite:
        _require_finite("logits", logits32)
    k = logits.shape[1]
    if predictions is None:
        pred = logits32.argmax(axis=1).astype(np.int64)
    else:
        pred = _int_vector("predictions", predictions, n)
        if pred.min(initial=0) < 0 or pred.max(initial=0) >= k:
            raise ValueError(f"predictions must be class indices in [0, {k})")
    columns: dict[str, pa.Array] = {
        "instance_id": pa.array(ids, pa.string()),
        "label": _label_array(labels, n),
        "prediction": pa.array(pred, pa.int64()),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits32.ravel(), pa.float32()), k),
    }
    columns.update(score_columns(extra, n, allow_nonfinite))
    write_outputs(client, run_id, CLASSIFICATION, columns, dataset, dataset_run_id)


def load_outputs(client: MlflowClient, run_id: str) -> Outputs:
    """Read run ``run_id``'s outputs artifact. Raises :class:`ArtifactError`."""
    run = get_run(client, run_id)
    path = artifact_path(client, run_id, contract.ARTIFACT_OUTPUTS, run=run)
    table = _read_parquet(path, f"outputs of run {run_id}", ("instance_id",))
    try:
        kind = table_kind(table.schema)
    except ValueError as exc:
        raise ArtifactError(f"outputs of run {run_id}: {exc}", "unreadable") from None
    required = _REQUIRED[kind]
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ArtifactError(f"outputs of run {run_id} ({kind}) file {path.name} lacks columns {missing}",
                            "unreadable")
    if kind != CLASSIFICATION:
        try:
            outputs = _READERS[kind](table)
        except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
            raise ArtifactError(f"outputs of run {run_id} ({kind}) are malformed: {exc}", "unreadable") from None
        outputs.dataset = run.data.tags.get(contract.TAG_DATASET)
        outputs.dataset_run_id = run.data.tags.get(contract.TAG_DATASET_RUN)
        return outputs
    n = table.num_rows
    try:
        logits = _logits_matrix(table.column("logits"), n)
        labels = (table.column("label").to_pandas().fillna(-1).to_numpy(np.int64)
                  if "label" in table.column_names else np.full(n, -1, np.int64))
        outputs = Outputs(
            instance_ids=id_strings(table.column("instance_id")),
            labels=labels,
            predictions=table.column("prediction").to_numpy().astype(np.int64),
            logits=logits,
            scores={c[len("score_"):]: table.column(c).to_numpy().astype(np.float64)
                    for c in table.column_names if c.startswith("score_")},
        )
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ArtifactError(f"outputs of run {run_id} are malformed: {exc}", "unreadable") from None
    tags = run.data.tags
    outputs.dataset = tags.get(contract.TAG_DATASET)
    outputs.dataset_run_id = tags.get(contract.TAG_DATASET_RUN)
    return outputs


#: Columns each kind's file must have.
_REQUIRED = {CLASSIFICATION: ("instance_id", "prediction", "logits"),
             GENERATION: ("instance_id", "generation", "references"),
             REGRESSION: ("instance_id", "prediction"), EMBEDDING: ("instance_id", "vector")}
_READERS = {GENERATION: read_generation, REGRESSION: read_regression, EMBEDDING: read_embedding}


def id_strings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow string column as a numpy array of ``str`` without one Python object per row.

    ASCII ids (the usual case) become a fixed-width unicode array, converted in C (a
    million ids in milliseconds, 4 bytes per character); other ids an object array.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise ValueError("instance ids contain nulls")
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n and pc.all(pc.string_is_ascii(arr)).as_py():
        width = max(int(pc.max(pc.utf8_length(arr)).as_py()), 1)
        padded = pc.utf8_rpad(arr, width, "\0")  # numpy drops trailing NULs: the same strings
        offsets = np.frombuffer(padded.buffers()[1], np.int64, n + 1, padded.offset * 8)
        data = np.frombuffer(padded.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
        # ASCII bytes are their code points: widen to UCS-4 and view as fixed-width unicode.
        return data.reshape(n, width).astype(np.uint32).view(f"U{width}").reshape(n)
    return np.asarray(arr.to_pylist(), dtype=object)


def _logits_matrix(column: pa.ChunkedArray, n: int) -> np.ndarray:
    arr = column.combine_chunks()
    if n == 0:
        width = arr.type.list_size if pa.types.is_fixed_size_list(arr.type) else 0
        return np.zeros((0, width), np.float32)
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = np.asarray(pc.list_value_length(arr))
        if lengths.min() != lengths.max():
            raise ValueError("logits lists have different lengths")
        width = int(lengths[0])
    else:
        raise ValueError(f"logits column has type {arr.type}, not a list of floats")
    values = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(n, width)
