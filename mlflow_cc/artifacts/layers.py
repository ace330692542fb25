"""Per-layer artifacts of one model run: the per-tensor summary table and the effective weights and sampled activations (safetensors, float32), read one tensor at a time.

Large weights are sampled: a tensor of more than ``sample_above`` elements (default
:data:`SAMPLE_ABOVE`) is stored as :data:`SAMPLE_SIZE` values taken at positions drawn from its
shape and a seed (:func:`sample_positions`), so every model with the same shapes keeps the same
positions and two models' samples compare element by element. Its summary row stays exact (over
all elements). The safetensors header lists the sampled tensors and their full shapes
(:data:`SAMPLED_KEY`, JSON) with the seed (:data:`SAMPLE_SEED_KEY`); the summary's ``stored``
column says "full", "sample" or "summary only" per tensor.
"""

from __future__ import annotations

import functools
import json
import math
import posixpath
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mlflow_cc import contract
from mlflow_cc.artifacts.files import artifact_path
from mlflow_cc.artifacts.tables import _read_parquet, _require_finite
from mlflow_cc.artifacts.upload import local_artifact_root, publish_local, upload
from mlflow_cc.errors import ArtifactError

#: Columns every layer summary has (one row per tensor).
SUMMARY_COLUMNS = ("module", "tensor", "module_type", "shape", "numel", "zeros", "min", "max",
                   "mean", "std", "dtype", "quantized")


TENSOR_KINDS = {"weights": contract.ARTIFACT_WEIGHTS, "activations": contract.ARTIFACT_ACTIVATIONS}

#: Tensors with more elements than this are stored as a fixed sample (4 MB of float32).
SAMPLE_ABOVE = 1 << 20
#: Values kept of a sampled tensor (256 KB of float32).
SAMPLE_SIZE = 1 << 16
#: safetensors metadata: JSON ``{tensor name: full shape}`` of the tensors stored as samples.
SAMPLED_KEY = "mlflow_cc.sampled"
#: safetensors metadata: the seed of the sample positions.
SAMPLE_SEED_KEY = "mlflow_cc.sample_seed"


@functools.lru_cache(maxsize=64)
def _positions(shape: tuple[int, ...], size: int, seed: int) -> np.ndarray:
    numel = math.prod(shape)
    rng = np.random.default_rng([seed, zlib.crc32(json.dumps(list(shape)).encode())])
    positions = np.sort(rng.choice(numel, size=size, replace=False))
    positions.setflags(write=False)
    return positions


def sample_positions(shape: tuple[int, ...] | list[int], size: int = SAMPLE_SIZE, seed: int = 0) -> np.ndarray | None:
    """Sorted flat positions kept of a tensor of ``shape``, or None when it has ``size`` elements or fewer.

    Drawn from the shape and ``seed`` only, so every model whose tensor has that shape keeps the
    same positions (whatever the tensor's name, values or model).
    """
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) <= size:
        return None
    return _positions(shape, int(size), int(seed))


def sample_weights(weights: Mapping[str, np.ndarray], *, above: int | None = SAMPLE_ABOVE,
                   size: int = SAMPLE_SIZE, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """(arrays, sampled): tensors of more than ``above`` elements replaced by their sample
    (:func:`sample_positions`), the others as given; ``sampled`` maps each sampled name to its
    full shape. ``above=None`` keeps everything in full."""
    out: dict[str, np.ndarray] = {}
    sampled: dict[str, list[int]] = {}
    for name, values in weights.items():
        arr = np.asarray(values)
        positions = None if above is None or arr.size <= above else sample_positions(arr.shape, size, seed)
        if positions is None:
            out[name] = arr
        else:
            out[name] = arr.reshape(-1)[positions]
            sampled[name] = list(arr.shape)
    return out, sampled


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
               sampled: Mapping[str, Sequence[int]] | None = None, sample_seed: int = 0,
               client: MlflowClient | None = None) -> None:
    """Log a model's layer summary, effective weights and (optionally) sampled activations.

    ``summary``: one row per tensor with :data:`SUMMARY_COLUMNS` (build rows with
    :func:`summarize_tensor`). ``weights``: float arrays by parameter name
    (``module.tensor``), stored float32. ``activations``: values by module name, stored
    as 1-D float32. ``metadata``: strings kept in both safetensors headers (e.g. the
    activation sample's seed). Non-finite values are refused unless ``allow_nonfinite``.
    ``sampled``: the weights given as samples (from :func:`sample_weights`, drawn with
    ``sample_seed``), by name, with their full shapes.
    """
    client = client or MlflowClient()
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"layer summary lacks columns {missing}")
    sampled = {str(k): [int(d) for d in v] for k, v in (sampled or {}).items()}
    for name, shape in sampled.items():
        if name not in weights or np.ndim(weights[name]) != 1 or np.size(weights[name]) >= math.prod(shape):
            raise ValueError(f"weight {name!r} is not a sample of a tensor of shape {shape}")
    table = pa.Table.from_pandas(_with_stored(summary, weights, sampled), preserve_index=False)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    weight_meta = dict(meta)
    if sampled:
        weight_meta.update({SAMPLED_KEY: json.dumps(sampled), SAMPLE_SEED_KEY: str(int(sample_seed))})
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
            header = weight_meta if kind == "weights" else meta
            save_file(arrays, str(folder / posixpath.basename(TENSOR_KINDS[kind])), metadata=header or None)
        pq.write_table(table, folder / posixpath.basename(contract.ARTIFACT_LAYER_SUMMARY))
        if local_root is None:
            upload(client, run_id, str(folder), layers_dir, folder=True)
        else:
            publish_local(folder, local_root / layers_dir)


def _with_stored(summary: pd.DataFrame, weights: Mapping[str, np.ndarray],
                 sampled: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """The summary with a ``stored`` column: "full", "sample" or "summary only" per tensor."""
    out = summary.reset_index(drop=True)
    if out.empty:
        return out.assign(stored=pd.Series(dtype=str))
    names = [f"{m}.{t}" if m else str(t) for m, t in zip(out["module"], out["tensor"])]
    return out.assign(stored=["sample" if n in sampled else "full" if n in weights else "summary only"
                              for n in names])


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

    def sampled(self) -> dict[str, tuple[int, ...]]:
        """Tensors stored as a sample (:func:`sample_positions`), by name, with their full shapes."""
        try:
            listed = json.loads(self._metadata.get(SAMPLED_KEY) or "{}")
            return {str(k): tuple(int(d) for d in v) for k, v in listed.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"{self.label} lists its sampled tensors unreadably: {exc}", "unreadable") from None

    def sample_seed(self) -> int:
        """The seed of the sample positions (0 when none is stored)."""
        try:
            return int(self._metadata.get(SAMPLE_SEED_KEY) or 0)
        except ValueError:
            raise ArtifactError(f"{self.label} has an unreadable sample seed", "unreadable") from None

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
