"""Validation and Parquet helpers the artifact writers and readers share.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
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


def _read_parquet(path: Path, what: str, required: Sequence[str]) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{what} file {path.name} is not readable Parquet: {exc}", "unreadable") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ArtifactError(f"{what} file {path.name} lacks columns {missing}", "unreadable")
    return table
