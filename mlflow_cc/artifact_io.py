"""Write and read the run artifacts comparison needs, at the numpy level (no torch, no Dash).

Three artifacts, at the paths of :mod:`mlflow_cc.contract`:

* **outputs** (one per model run): per-instance predictions on an evaluation set,
  Parquet with ``instance_id`` (string), ``label`` (int64, nullable), ``prediction``
  (int64), ``logits`` (fixed-size list of float32, one per class), ``score_<name>``
  (float64, optional per-instance scores);
* **dataset** (one dataset run per experiment and dataset name): per-instance
  metadata (``instance_id``, ``label``, ``label_name``, ``meta_<attribute>``) and
  previews (``instance_id``, ``kind`` "image"|"text", ``value``: base64 PNG or text),
  stored once and shared by every run that evaluates on the dataset;
* **layers** (one per model run): a per-tensor summary table (Parquet), the
  effective weights and sampled activations (safetensors, float32), read one tensor
  at a time.

Every write is complete-or-absent: files are written to a temp folder first and
handed to MLflow in one ``log_artifact(s)`` call, after validation. Nothing is
pickled. Readers raise :class:`~mlflow_cc.errors.ArtifactError` with reason
"not logged", "unreadable" or "too large" (see :mod:`mlflow_cc.artifact_files`).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import posixpath
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mlflow_cc import contract
from mlflow_cc.artifact_files import artifact_path, get_run
from mlflow_cc.errors import ArtifactError
from mlflow_cc.upload import local_artifact_root, publish_local, upload

#: Parquet key-value metadata key holding the dataset's class names (JSON list).
CLASS_NAMES_KEY = b"mlflow_cc.class_names"
#: Columns every layer summary has (one row per tensor).
SUMMARY_COLUMNS = ("module", "tensor", "module_type", "shape", "numel", "zeros", "min", "max",
                   "mean", "std", "dtype", "quantized")
#: Largest side of an image preview, pixels; larger images are downscaled.
PREVIEW_MAX_SIDE = 64
TENSOR_KINDS = {"weights": contract.ARTIFACT_WEIGHTS, "activations": contract.ARTIFACT_ACTIVATIONS}


# =============================================================================
# Writers
# =============================================================================
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
    for name, values in (extra or {}).items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(f"extra score {name!r} must have shape ({n},), not {arr.shape}")
        if not allow_nonfinite:
            _require_finite(f"extra score {name!r}", arr)
        columns[f"score_{name}"] = pa.array(arr, pa.float64())
    _log_table(client, run_id, contract.ARTIFACT_OUTPUTS, pa.table(columns))
    tags = {contract.TAG_DATASET: dataset, contract.TAG_DATASET_RUN: dataset_run_id}
    for key, value in tags.items():
        if value:
            client.set_tag(run_id, key, value)


def log_dataset(experiment_id: str, name: str, instances: pd.DataFrame,
                previews: pd.DataFrame | None = None, class_names: Sequence[str] | None = None,
                client: MlflowClient | None = None) -> str:
    """Store a dataset's instance metadata and previews once; return its dataset run id.

    ``instances``: columns ``instance_id``, ``label`` and optionally ``label_name`` and
    ``meta_<attribute>`` subgroup columns. ``previews``: ``instance_id``, ``kind``
    ("image"|"text"), ``value`` (base64 PNG, see :func:`image_preview`, or text).
    If the experiment already has a finished dataset run of this name, its id is
    returned and nothing is uploaded again.
    """
    client = client or MlflowClient()
    existing = find_dataset_run(client, experiment_id, name)
    if existing is not None:
        return existing
    table = _instances_table(instances, class_names)
    preview_table = _previews_table(previews) if previews is not None else None
    run = client.create_run(experiment_id, run_name=f"dataset: {name}", tags={
        contract.TAG_KIND: contract.KIND_DATASET, contract.TAG_DATASET: name,
        contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION)})
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="mlflow-cc-") as tmp:
            folder = Path(tmp) / posixpath.basename(posixpath.dirname(contract.ARTIFACT_DATASET_INSTANCES))
            folder.mkdir()
            pq.write_table(table, folder / posixpath.basename(contract.ARTIFACT_DATASET_INSTANCES))
            if preview_table is not None:
                pq.write_table(preview_table, folder / posixpath.basename(contract.ARTIFACT_DATASET_PREVIEWS),
                               row_group_size=4096)
            upload(client, run_id, str(folder), posixpath.dirname(contract.ARTIFACT_DATASET_INSTANCES),
                   folder=True)
    except BaseException:
        # A half-made dataset run would be found and trusted by the next writer: remove it.
        client.delete_run(run_id)
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def find_dataset_run(client: MlflowClient, experiment_id: str, name: str) -> str | None:
    """The id of the experiment's finished dataset run called ``name`` (oldest first), or None."""
    quoted = name.replace("'", "\\'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{contract.TAG_KIND}` = '{contract.KIND_DATASET}' and "
                       f"tags.`{contract.TAG_DATASET}` = '{quoted}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0].info.run_id if runs else None


def image_preview(array: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> str:
    """A small PNG thumbnail of an image, base64-encoded (ASCII).

    ``array``: (H, W) grey or (H, W, 3|4) colour, any numeric range (scaled min..max to
    0..255, so an 8x8 digit with values 0..16 shows with full contrast). Images larger
    than ``max_side`` pixels on a side are downscaled. Needs Pillow.
    """
    from PIL import Image  # only the writer of previews needs Pillow

    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ValueError(f"image preview needs an (H, W) or (H, W, 3|4) array, not {arr.shape}")
    _require_finite("image", arr)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255.0
    image = Image.fromarray(np.round(scaled).astype(np.uint8))
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def summarize_tensor(module: str, tensor_name: str, module_type: str, array: np.ndarray,
                     dtype: str | None = None, quantized: bool = False) -> dict[str, Any]:
    """One row of the layer summary for ``array`` (the effective, float tensor).

    ``dtype`` is the tensor's storage dtype in the model (e.g. "qint8" for a quantized
    weight); default ``array.dtype``. Statistics are over all elements, in the
    tensor's own units; an empty tensor has NaN statistics.
    """
    arr = np.asarray(array)
    flat = arr.astype(np.float64, copy=False).ravel()
    empty = flat.size == 0
    return {
        "module": module, "tensor": tensor_name, "module_type": module_type,
        "shape": json.dumps(list(arr.shape)), "numel": int(flat.size),
        "zeros": int(flat.size - np.count_nonzero(flat)),
        "min": math.nan if empty else float(flat.min()), "max": math.nan if empty else float(flat.max()),
        "mean": math.nan if empty else float(flat.mean()), "std": math.nan if empty else float(flat.std()),
        "dtype": dtype or str(arr.dtype), "quantized": bool(quantized),
    }


def log_layers(run_id: str, summary: pd.DataFrame, weights: Mapping[str, np.ndarray],
               activations: Mapping[str, np.ndarray] | None = None, *,
               metadata: Mapping[str, str] | None = None, allow_nonfinite: bool = False,
               client: MlflowClient | None = None) -> None:
    """Log a model's layer summary, effective weights and (optionally) sampled activations.

    ``summary``: one row per tensor with :data:`SUMMARY_COLUMNS` (build rows with
    :func:`summarize_tensor`). ``weights``: float arrays by parameter name
    (``module.tensor``), stored float32. ``activations``: values by module name, stored
    as 1-D float32. ``metadata``: strings kept in both safetensors headers (e.g. the
    activation sample's seed). Non-finite values are refused unless ``allow_nonfinite``.
    """
    client = client or MlflowClient()
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"layer summary lacks columns {missing}")
    table = pa.Table.from_pandas(summary.reset_index(drop=True), preserve_index=False)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    tensors = {"weights": _float32_tensors("weight", weights, flat=False, allow_nonfinite=allow_nonfinite)}
    if activations is not None:
        tensors["activations"] = _float32_tensors("activation", activations, flat=True,
                                                  allow_nonfinite=allow_nonfinite)
    layers_dir = posixpath.dirname(contract.ARTIFACT_LAYER_SUMMARY)
    # On a local artifact store, stage next to the destination and rename into place:
    # weights are the bulk of a model, and a second full copy doubled the capture time.
    local_root = local_artifact_root(client, run_id)
    staging_parent = None
    if local_root is not None:
        staging_parent = local_root / posixpath.dirname(layers_dir)
        staging_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mlflow-cc-staging-", dir=staging_parent) as tmp:
        folder = Path(tmp) / posixpath.basename(layers_dir)
        folder.mkdir()
        for kind, arrays in tensors.items():
            save_file(arrays, str(folder / posixpath.basename(TENSOR_KINDS[kind])), metadata=meta or None)
        pq.write_table(table, folder / posixpath.basename(contract.ARTIFACT_LAYER_SUMMARY))
        if local_root is None:
            upload(client, run_id, str(folder), layers_dir, folder=True)
        else:
            publish_local(folder, local_root / layers_dir)


# =============================================================================
# Readers
# =============================================================================
@dataclass
class Outputs:
    """A model's per-instance outputs, as numpy arrays aligned by row.

    ``labels`` uses -1 for an unknown label. ``logits`` is (N, K) float32.
    """

    instance_ids: np.ndarray  # (N,) object (str)
    labels: np.ndarray  # (N,) int64, -1 = unknown
    predictions: np.ndarray  # (N,) int64
    logits: np.ndarray  # (N, K) float32
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) float64
    dataset: str | None = None
    dataset_run_id: str | None = None

    def __len__(self) -> int:
        return len(self.instance_ids)

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


@dataclass
class Preview:
    """How to show one instance: ``kind`` "image" (``value`` base64 PNG) or "text"."""

    instance_id: str
    kind: str
    value: str


class DatasetInfo:
    """A dataset run's instances table and class names; previews fetched on demand.

    Previews stay on the server: :meth:`preview` and :meth:`previews` look up the few
    ids a page shows. The previews file is read once, on first use.
    """

    def __init__(self, run_id: str, name: str, instances: pd.DataFrame, class_names: list[str],
                 previews_file: Path | None) -> None:
        self.run_id = run_id
        self.name = name
        self.instances = instances
        self.class_names = class_names
        self._previews_file = previews_file
        self._previews: dict[str, Preview] | None = None

    @property
    def subgroup_columns(self) -> list[str]:
        """The ``meta_<attribute>`` columns of :attr:`instances`."""
        return [c for c in self.instances.columns if c.startswith("meta_")]

    def preview(self, instance_id: str) -> Preview | None:
        """The preview of one instance, or None when the dataset has none for it."""
        return self._load_previews().get(str(instance_id))

    def previews(self, instance_ids: Sequence[str]) -> dict[str, Preview]:
        """Previews of the given instances that exist, by id."""
        lookup = self._load_previews()
        return {str(i): lookup[str(i)] for i in instance_ids if str(i) in lookup}

    def _load_previews(self) -> dict[str, Preview]:
        if self._previews is None:
            if self._previews_file is None:
                self._previews = {}
            else:
                table = _read_parquet(self._previews_file, "previews", ("instance_id", "kind", "value"))
                cols = [table.column(c).to_pylist() for c in ("instance_id", "kind", "value")]
                self._previews = {i: Preview(i, k, v) for i, k, v in zip(*cols)}
        return self._previews


def load_outputs(client: MlflowClient, run_id: str) -> Outputs:
    """Read run ``run_id``'s outputs artifact. Raises :class:`ArtifactError`."""
    run = get_run(client, run_id)
    path = artifact_path(client, run_id, contract.ARTIFACT_OUTPUTS, run=run)
    table = _read_parquet(path, f"outputs of run {run_id}", ("instance_id", "prediction", "logits"))
    n = table.num_rows
    try:
        logits = _logits_matrix(table.column("logits"), n)
        labels = (table.column("label").to_pandas().fillna(-1).to_numpy(np.int64)
                  if "label" in table.column_names else np.full(n, -1, np.int64))
        outputs = Outputs(
            instance_ids=np.asarray(table.column("instance_id").to_pylist(), dtype=object),
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


def load_dataset(client: MlflowClient, dataset_run_id: str) -> DatasetInfo:
    """Read a dataset run's instances and class names; previews load on first lookup."""
    run = get_run(client, dataset_run_id)
    path = artifact_path(client, dataset_run_id, contract.ARTIFACT_DATASET_INSTANCES, run=run)
    table = _read_parquet(path, f"instances of dataset run {dataset_run_id}", ("instance_id",))
    raw_names = (table.schema.metadata or {}).get(CLASS_NAMES_KEY)
    try:
        class_names = [str(c) for c in json.loads(raw_names)] if raw_names else []
    except ValueError:
        raise ArtifactError(f"class names of dataset run {dataset_run_id} are not JSON", "unreadable") from None
    try:
        previews_file: Path | None = artifact_path(client, dataset_run_id, contract.ARTIFACT_DATASET_PREVIEWS,
                                                   run=run)
    except ArtifactError as exc:
        if exc.reason != "not logged":
            raise
        previews_file = None  # previews are optional
    name = run.data.tags.get(contract.TAG_DATASET, dataset_run_id)
    return DatasetInfo(dataset_run_id, name, table.to_pandas(), class_names, previews_file)


def load_layer_summary(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """Read run ``run_id``'s per-tensor layer summary (columns :data:`SUMMARY_COLUMNS`)."""
    path = artifact_path(client, run_id, contract.ARTIFACT_LAYER_SUMMARY)
    return _read_parquet(path, f"layer summary of run {run_id}", SUMMARY_COLUMNS).to_pandas()


#: safetensors dtype codes numpy reads directly (all little-endian by the format's definition).
_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                 "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


class TensorFile:
    """One safetensors artifact, open for reading one tensor at a time.

    Use as a context manager: ``with open_tensors(client, run_id) as f: f.get(name)``.
    The file is validated with ``safetensors.safe_open`` and its header kept; each
    :meth:`get` then reads just that tensor's bytes at its offset. Reading through
    one long-lived memory map instead would leave every page touched so far resident
    in the process (RSS grows to the whole file while comparing many models), which
    defeats streaming; a positioned read keeps memory at one tensor.
    """

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        try:
            # safe_open checks the header against the file size: truncation and garbage fail here.
            with safe_open(str(path), framework="numpy") as checked:
                self._keys = list(checked.keys())
            with open(path, "rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"{label} is not a readable safetensors file: {exc}", "unreadable") from None
        self._data_start = 8 + header_len
        self._metadata = header.pop("__metadata__", None) or {}
        self._entries: dict[str, dict[str, Any]] = header

    def keys(self) -> list[str]:
        """Tensor names, in file order."""
        return list(self._keys)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the header, without loading the tensor."""
        return tuple(int(d) for d in self._entries[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        """Load one tensor (float32 for tensors mlflow-cc wrote). ``KeyError`` for an unknown name."""
        entry = self._entries[name]
        dtype = _NUMPY_DTYPES.get(entry["dtype"])
        if dtype is None:  # e.g. BF16, which numpy lacks: let the library convert it
            return self._get_with_library(name)
        begin, end = (int(v) for v in entry["data_offsets"])
        count = (end - begin) // np.dtype(dtype).itemsize
        try:
            values = np.fromfile(self.path, dtype=dtype, count=count, offset=self._data_start + begin)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"tensor {name!r} of {self.label} is unreadable: {exc}", "unreadable") from None
        if values.size != count:
            raise ArtifactError(f"tensor {name!r} of {self.label} is truncated", "unreadable")
        return values.reshape(self.shape(name))

    def _get_with_library(self, name: str) -> np.ndarray:
        try:
            with safe_open(str(self.path), framework="numpy") as f:
                return f.get_tensor(name)
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise ArtifactError(f"tensor {name!r} of {self.label} is unreadable: {exc}", "unreadable") from None

    def metadata(self) -> dict[str, str]:
        """The string metadata stored in the file header."""
        return dict(self._metadata)

    def close(self) -> None:
        """Nothing stays open between reads; kept so the object is a context manager."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tensors(client: MlflowClient, run_id: str, kind: str = "weights") -> TensorFile:
    """Open run ``run_id``'s ``kind`` ("weights" or "activations") tensors for streaming reads."""
    if kind not in TENSOR_KINDS:
        raise ValueError(f"kind must be one of {sorted(TENSOR_KINDS)}, not {kind!r}")
    path = artifact_path(client, run_id, TENSOR_KINDS[kind])
    return TensorFile(path, f"{kind} of run {run_id}")


# =============================================================================
# Validation and encoding
# =============================================================================
def _instance_ids(instance_ids: Sequence[str]) -> list[str]:
    ids = [str(i) for i in (instance_ids.tolist() if isinstance(instance_ids, np.ndarray) else instance_ids)]
    if len(set(ids)) != len(ids):
        raise ValueError("instance ids must be unique")
    return ids


def _require_finite(what: str, arr: np.ndarray) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = int(arr.size - np.isfinite(arr).sum())
        raise ValueError(f"{what} has {bad} non-finite values (NaN or inf) of {arr.size}")


def _int_vector(what: str, values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), not {arr.shape}")
    if arr.dtype.kind == "f":
        _require_finite(what, arr)
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{what} must be whole numbers")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{what} must be integers, not {arr.dtype}")
    return arr.astype(np.int64)


def _label_array(labels: Any, n: int) -> pa.Array:
    """Labels as nullable int64: None, NaN, masked or negative entries are unknown."""
    if labels is None:
        return pa.nulls(n, pa.int64())
    series = pd.Series(labels)
    if len(series) != n:
        raise ValueError(f"labels must have {n} entries, not {len(series)}")
    numeric = pd.to_numeric(series, errors="raise").astype("Float64")
    if (numeric.dropna() != numeric.dropna().round()).any():
        raise ValueError("labels must be whole numbers (class indices)")
    mask = numeric.isna() | (numeric < 0)
    values = numeric.fillna(-1).to_numpy(np.float64).astype(np.int64)
    return pa.array(values, pa.int64(), mask=mask.to_numpy(bool))


def _instances_table(instances: pd.DataFrame, class_names: Sequence[str] | None) -> pa.Table:
    if "instance_id" not in instances.columns:
        raise ValueError("dataset instances need an 'instance_id' column")
    df = instances.reset_index(drop=True).copy()
    df["instance_id"] = _instance_ids(df["instance_id"].tolist())
    n = len(df)
    df["label"] = _label_array(df["label"] if "label" in df.columns else None, n).to_pandas().astype("Int64")
    names = [str(c) for c in class_names] if class_names is not None else []
    if "label_name" not in df.columns and names:
        df["label_name"] = [names[v] if v is not pd.NA and 0 <= v < len(names) else None
                            for v in df["label"].tolist()]
    table = pa.Table.from_pandas(df, preserve_index=False)
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          CLASS_NAMES_KEY: json.dumps(names).encode()})


def _previews_table(previews: pd.DataFrame) -> pa.Table:
    missing = [c for c in ("instance_id", "kind", "value") if c not in previews.columns]
    if missing:
        raise ValueError(f"previews lack columns {missing}")
    kinds = set(previews["kind"].astype(str))
    if not kinds <= {"image", "text"}:
        raise ValueError(f"preview kind must be 'image' or 'text', not {sorted(kinds - {'image', 'text'})}")
    return pa.table({
        "instance_id": pa.array(_instance_ids(previews["instance_id"].tolist()), pa.string()),
        "kind": pa.array(previews["kind"].astype(str).tolist(), pa.string()),
        "value": pa.array(previews["value"].astype(str).tolist(), pa.string()),
    })


def _float32_tensors(what: str, arrays: Mapping[str, np.ndarray], *, flat: bool,
                     allow_nonfinite: bool) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, values in arrays.items():
        arr = np.asarray(values)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{what} {name!r} must be numeric, not {arr.dtype}")
        arr = np.ascontiguousarray(arr.reshape(-1) if flat else arr, dtype=np.float32)
        if not allow_nonfinite:
            _require_finite(f"{what} {name!r}", arr)
        out[str(name)] = arr
    return out


def _log_table(client: MlflowClient, run_id: str, artifact: str, table: pa.Table) -> None:
    with tempfile.TemporaryDirectory(prefix="mlflow-cc-") as tmp:
        local = os.path.join(tmp, posixpath.basename(artifact))
        pq.write_table(table, local)
        upload(client, run_id, local, posixpath.dirname(artifact))


def _read_parquet(path: Path, what: str, required: Sequence[str]) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{what} file {path.name} is not readable Parquet: {exc}", "unreadable") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ArtifactError(f"{what} file {path.name} lacks columns {missing}", "unreadable")
    return table


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
