"""Regression and embedding outputs (``outputs.parquet`` of kind "regression" / "embedding").

Regression columns: ``instance_id``, ``prediction`` (float64), ``target`` (float64, null =
unknown), ``score_<name>``. Embedding columns: ``instance_id``, ``vector`` (fixed-size list of
D float32), ``score_<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from mlflow_cc.artifacts.output_kinds import (
    EMBEDDING,
    REGRESSION,
    Outputs,
    kind_outputs,
    score_columns,
    write_outputs,
)
from mlflow_cc.artifacts.tables import _instance_ids, _require_finite


def log_regression_outputs(run_id: str, instance_ids: Sequence[str], predictions: np.ndarray,
                           targets: np.ndarray | None = None, *, dataset: str | None = None,
                           dataset_run_id: str | None = None, scores: Mapping[str, np.ndarray] | None = None,
                           allow_nonfinite: bool = False, client: MlflowClient | None = None) -> None:
    """Log a regression model's per-instance predicted values (and the true targets) to run ``run_id``.

    ``predictions`` (N,) floats; ``targets`` (N,) floats, NaN = unknown target (inf is refused).
    ``scores``: more per-instance scores. Raises ``ValueError`` for shapes that do not match the
    ids or non-finite predictions (unless ``allow_nonfinite``); nothing is written then.
    """
    if client is None:
        client = MlflowClient()
    ids = _instance_ids(instance_ids)
    n = len(ids)
    pred = _float_vector("predictions", predictions, n)
    if not allow_nonfinite:
        _require_finite("predictions", pred)
    columns: dict[str, pa.Array] = {"instance_id": pa.array(ids, pa.string()),
                                    "prediction": pa.array(pred, pa.float64())}
    if targets is None:
        columns["target"] = pa.nulls(n, pa.float64())
    else:
        target = _float_vector("targets", targets, n)
        if np.isinf(target).any():
            raise ValueError("targets has infinite values (use NaN for an unknown target)")
        columns["target"] = pa.array(target, pa.float64(), mask=np.isnan(target))
    columns.update(score_columns(scores, n, allow_nonfinite))
    write_outputs(client, run_id, REGRESSION, columns, dataset, dataset_run_id)


def log_embedding_outputs(run_id: str, instance_ids: Sequence[str], vectors: np.ndarray, *,
                          dataset: str | None = None, dataset_run_id: str | None = None,
                          scores: Mapping[str, np.ndarray] | None = None, allow_nonfinite: bool = False,
                          client: MlflowClient | None = None) -> None:
    """Log a model's per-instance embedding vectors ((N, D) floats) to run ``run_id``.

    Compared by cosine similarity to the base model's vector of the same instance. Raises
    ``ValueError`` for a shape that does not match the ids or non-finite values.
    """
    if client is None:
        client = MlflowClient()
    ids = _instance_ids(instance_ids)
    n = len(ids)
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise ValueError(f"vectors must have shape (N={n}, D>=1), not {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"vectors must be numbers, not {arr.dtype}")
    vec = np.ascontiguousarray(arr, dtype=np.float32)
    if not allow_nonfinite:
        _require_finite("vectors", vec)
    columns: dict[str, pa.Array] = {
        "instance_id": pa.array(ids, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel(), pa.float32()), vec.shape[1])}
    columns.update(score_columns(scores, n, allow_nonfinite))
    write_outputs(client, run_id, EMBEDDING, columns, dataset, dataset_run_id)


def _float_vector(what: str, values: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), not {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{what} must be numbers, not {arr.dtype}")
    return arr.astype(np.float64)


def _scores(table: pa.Table) -> dict[str, np.ndarray]:
    return {c[len("score_"):]: table.column(c).to_numpy().astype(np.float64)
            for c in table.column_names if c.startswith("score_")}


def read_regression(table: pa.Table) -> Outputs:
    target = (table.column("target").to_pandas().astype("float64").to_numpy()
              if "target" in table.column_names else np.full(table.num_rows, np.nan))
    return kind_outputs(REGRESSION, table.column("instance_id").to_pylist(),
                        values=table.column("prediction").to_numpy().astype(np.float64), targets=target,
                        scores=_scores(table))


def read_embedding(table: pa.Table) -> Outputs:
    arr = table.column("vector").combine_chunks()
    if not pa.types.is_fixed_size_list(arr.type):
        raise ValueError(f"vector column has type {arr.type}, not a fixed-size list of floats")
    width = arr.type.list_size
    vectors = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(table.num_rows, width)
    return kind_outputs(EMBEDDING, table.column("instance_id").to_pylist(), vectors=vectors, scores=_scores(table))
