"""Validation and Parquet helpers the artifact writers and readers share.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient

from mlflow_cc.artifacts.upload import upload
from mlflow_cc.errors import ArtifactError


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


def _log_table(client: MlflowClient, run_id: str, artifact: str, table: pa.Table) -> None:
    with tempfile.TemporaryDirectory(prefix="mlflow-cc-") as tmp:
        local = os.path.join(tmp, posixpath.basename(artifact))
        pq.write_table(table, local)
        upload(client, run_id, local, posixpath.dirname(artifact))


def _read_parquet(path: Path, what: str, required: Sequence[str],
                  skip: Callable[[pa.Schema], Sequence[str]] | None = None) -> pa.Table:
    """One Parquet file as a table, one chunk per row group (``pq.read_table`` cuts each column into
    batches of 128Ki rows, which a reader needing contiguous arrays would then copy together).

    The file is memory-mapped (artifacts never change once written): its pages are decoded from
    the OS page cache instead of being copied into freshly allocated buffers first, which at a
    dozen 50 MB files cost more system time than the decoding itself.
    ``skip(schema)``: columns not to read, given the file's schema (they still count as present).
    """
    try:
        pf = pq.ParquetFile(path, memory_map=True)
        names = pf.schema_arrow.names
        missing = [c for c in required if c not in names]
        skipped = set(skip(pf.schema_arrow)) if skip is not None and not missing else set()
        table = pf.read(columns=[c for c in names if c not in skipped] if skipped else None)
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{what} file {path.name} is not readable Parquet: {exc}", "unreadable") from None
    if missing:
        raise ArtifactError(f"{what} file {path.name} lacks columns {missing}", "unreadable")
    return table


def single_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as one array: its only chunk as it is (``combine_chunks`` copies even one chunk)."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


#: Byte order and type of a float-matrix row stored as fixed-size binary (see :func:`float32_rows`).
FLOAT32_LE = np.dtype("<f4")


def float32_rows(matrix: np.ndarray) -> pa.Array:
    """An (N, K) float matrix as a ``fixed_size_binary(4 * K)`` column: row ``i`` holds its K
    values as little-endian float32, back to back.

    Parquet stores a list column (even a fixed-size one) with a repetition and a definition
    level per value, and reading decodes them: about a quarter of a second per million rows of
    ten classes. One fixed-width binary value per row reads as a single copy.
    """
    rows, width = matrix.shape
    data = np.ascontiguousarray(matrix, dtype=FLOAT32_LE)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * width), rows, [None, pa.py_buffer(data)])


def float32_matrix(column: pa.ChunkedArray | pa.Array, rows: int, what: str) -> np.ndarray:
    """An (N, K) float32 matrix from a column :func:`float32_rows` wrote (no copy on little-endian
    machines) or from a list or fixed-size list of floats (files of earlier versions).

    Raises ``ValueError`` for another type, rows of different lengths or missing rows.
    """
    arr = single_array(column)
    if arr.null_count:
        raise ValueError(f"{what} has {arr.null_count} missing rows")
    if pa.types.is_fixed_size_binary(arr.type):
        if arr.type.byte_width % 4:
            raise ValueError(f"{what} column has type {arr.type}, not whole float32 values")
        width = arr.type.byte_width // 4
        if not rows:
            return np.zeros((0, width), np.float32)
        values = np.frombuffer(arr.buffers()[1], FLOAT32_LE, rows * width, arr.offset * arr.type.byte_width)
        return values.reshape(rows, width).astype(np.float32, copy=False)
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = np.asarray(pc.list_value_length(arr)) if rows else np.zeros(1, np.int64)
        if lengths.min() != lengths.max():
            raise ValueError(f"{what} lists have different lengths")
        width = int(lengths[0])
    else:
        raise ValueError(f"{what} column has type {arr.type}, not float32 rows or a list of floats")
    if not rows:
        return np.zeros((0, width), np.float32)
    values = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(rows, width)
