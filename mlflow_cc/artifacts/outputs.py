"""Per-instance outputs of one model run on an evaluation set (``outputs.parquet``): write, validate, read.

Classification outputs are written here; the other kinds by :mod:`.generation_outputs` and
:mod:`.value_outputs`. :func:`load_outputs` reads every kind: the kind is in the file's schema
metadata (since schema version 2); a version-1 file without it holds classification outputs.
Since version 3 the logits are one fixed-size binary value per row (K little-endian float32,
:func:`~mlflow_cc.artifacts.tables.float32_rows`: read without per-value decoding); files of
versions 1 and 2 hold a (fixed-size) list of float32 per row and still read.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
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
    float32_matrix,
    float32_rows,
    single_array,
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
        "logits": float32_rows(logits32),
    }
    columns.update(score_columns(extra, n, allow_nonfinite))
    write_outputs(client, run_id, CLASSIFICATION, columns, dataset, dataset_run_id)


def load_outputs(client: MlflowClient, run_id: str) -> Outputs:
    """Read run ``run_id``'s outputs artifact. Raises :class:`ArtifactError`."""
    run = get_run(client, run_id)
    path = artifact_path(client, run_id, contract.ARTIFACT_OUTPUTS, run=run)
    shared: list[np.ndarray] = []

    def skip_known_ids(schema: pa.Schema) -> list[str]:
        """The id column is not read when an earlier read file had the same ids (see :data:`_IDS`)."""
        digest = (schema.metadata or {}).get(contract.OUTPUTS_META_IDS.encode(), b"").decode("ascii", "replace")
        known = _IDS.get(digest) if digest else None
        if known is None or schema.metadata.get(contract.OUTPUTS_META_KIND.encode()) != CLASSIFICATION.encode():
            return []
        shared.append(known)
        return ["instance_id"]

    table = _read_parquet(path, f"outputs of run {run_id}", ("instance_id",), skip=skip_known_ids)
    try:
        kind = table_kind(table.schema)
    except ValueError as exc:
        raise ArtifactError(f"outputs of run {run_id}: {exc}", "unreadable") from None
    required = _REQUIRED[kind]
    missing = [c for c in required if c not in table.column_names and not (shared and c == "instance_id")]
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
        logits = float32_matrix(table.column("logits"), n, "logits")
        labels = (table.column("label").to_pandas().fillna(-1).to_numpy(np.int64)
                  if "label" in table.column_names else np.full(n, -1, np.int64))
        if shared and len(shared[0]) != n:
            raise ValueError(f"{n} rows, but the instance ids it names are {len(shared[0])}")
        outputs = Outputs(
            instance_ids=shared[0] if shared else id_strings(table.column("instance_id")),
            labels=labels,
            predictions=np.asarray(table.column("prediction").to_numpy(), np.int64),
            logits=logits,
            scores={c[len("score_"):]: table.column(c).to_numpy().astype(np.float64)
                    for c in table.column_names if c.startswith("score_")},
        )
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ArtifactError(f"outputs of run {run_id} are malformed: {exc}", "unreadable") from None
    digest = (table.schema.metadata or {}).get(contract.OUTPUTS_META_IDS.encode())
    if digest and not shared:
        _IDS[digest.decode("ascii", "replace")] = outputs.instance_ids
    tags = run.data.tags
    outputs.dataset = tags.get(contract.TAG_DATASET)
    outputs.dataset_run_id = tags.get(contract.TAG_DATASET_RUN)
    return outputs


#: Instance-id arrays read, by the digest their file's metadata gives (``contract.OUTPUTS_META_IDS``,
#: :func:`~mlflow_cc.artifacts.output_kinds.ids_digest`), while any :class:`Outputs` holds them: the
#: outputs of models evaluated on the same instances share one array, and only the first file's id
#: column is decoded (a million ids: 11 MB read and 28 MB of numpy per file otherwise).
_IDS: weakref.WeakValueDictionary[str, np.ndarray] = weakref.WeakValueDictionary()

#: Columns each kind's file must have.
_REQUIRED = {CLASSIFICATION: ("instance_id", "prediction", "logits"),
             GENERATION: ("instance_id", "generation", "references"),
             REGRESSION: ("instance_id", "prediction"), EMBEDDING: ("instance_id", "vector")}
_READERS = {GENERATION: read_generation, REGRESSION: read_regression, EMBEDDING: read_embedding}


def id_strings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow string column as a numpy array of ``str`` without one Python object per row.

    ASCII ids (the usual case) become a fixed-width unicode array, converted in numpy
    from the column's bytes (a million ids in milliseconds, 4 bytes per character); other
    ids an object array.
    """
    arr = single_array(column)
    if arr.null_count:
        raise ValueError("instance ids contain nulls")
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    if n:
        offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
        _, offset_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offset_buf, offset_type, n + 1, arr.offset * np.dtype(offset_type).itemsize)
        chars = (np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8))
        chars = chars[offsets[0]:offsets[-1]]
        if not chars.size or int(chars.max()) < 128:
            lengths = np.diff(offsets)
            width = max(int(lengths.max()), 1)
            if int(lengths.min()) == width:  # ids of one length (the usual case): the bytes as they are
                rows = chars.reshape(n, width)
            else:  # padded with NULs, which numpy drops: the same strings
                rows = np.zeros((n, width), np.uint8)
                rows[np.arange(width) < lengths[:, None]] = chars
            # ASCII bytes are their code points: widen to UCS-4 and view as fixed-width unicode.
            return rows.astype(np.uint32).view(f"U{width}").reshape(n)
    return np.asarray(arr.to_pylist(), dtype=object)
