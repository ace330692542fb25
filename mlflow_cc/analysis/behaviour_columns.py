"""Per-instance behaviour columns computed when first asked for: one metric at a time, models in parallel.

At a million instances and a dozen models, every metric of every model (plus the
softmax of every model's logits) is gigabytes and seconds; a sorted page of one metric
needs one column per model. :class:`ModelColumns` keeps each model's outputs as read
(no copies when a model has the base's instances in the base's order, the usual case)
and computes a metric's column for every model on first use, the models in a small
thread pool (numpy releases the GIL), then caches it. The aligned arrays a metric
function gets (:class:`ModelArrays`: logits, softmax, log-softmax) are built per model
for that computation and dropped after, except the base's, which every metric needs.
:func:`join_dataset` joins the dataset's columns to the base's instances (by position when
they are the same instances in the same order, checked in Arrow).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlflow_cc.analysis.behaviour_metrics import SEP, BehaviourMetric, ModelArrays
from mlflow_cc.artifacts import Outputs

#: Threads computing models' columns at once (numpy work; more only adds memory).
WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Aligned arrays of non-base models kept for per-group metrics and prediction changes.
KEEP_ARRAYS = 2
#: Rows per block when a built-in metric is computed (a block's arrays stay in the CPU's cache).
CHUNK_ROWS = 32_768


@dataclass(frozen=True)
class Alignment:
    """Where each base instance is in a model's outputs: ``rows`` (None: same order), ``valid``."""

    rows: np.ndarray | None
    valid: np.ndarray  # (N,) bool
    all_valid: bool


def same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two id arrays hold the same ids in the same order (fast on fixed-width unicode)."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    if a.dtype.kind == "U" and a.dtype == b.dtype:
        return bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))


def ids_to_arrow(ids: np.ndarray) -> pa.Array:
    """Instance ids as an Arrow string array; ASCII fixed-width unicode ids are narrowed in C."""
    if ids.dtype.kind == "U" and len(ids):
        width = ids.dtype.itemsize // 4
        points = ids.view(np.uint32).reshape(len(ids), width)
        if width and int(points.max()) < 128:
            chars = points.astype(np.uint8)
            lengths = np.count_nonzero(chars, axis=1)
            offsets = np.zeros(len(ids) + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            data = chars[chars != 0]  # row-major: each id's characters, ids in order
            return pa.LargeStringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(data))
    return pa.array(np.asarray(ids, dtype=object), pa.large_string())


def join_dataset(ids: np.ndarray, labels: np.ndarray, dataset: pd.DataFrame | None) -> dict[str, Any]:
    """The instance table's first columns: ``instance_id``, the dataset's ``label_name`` and ``meta_*``
    joined by id, and ``label`` (``labels``, filled in place from the dataset's where unknown).

    A dataset with the base's instances in the base's order (the usual case, checked in Arrow)
    lends its columns as they are.
    """
    n = len(ids)
    table: dict[str, Any] = {"instance_id": ids}
    if dataset is not None and len(dataset):
        rows = _dataset_rows(dataset["instance_id"], ids)
        found = rows >= 0
        if "label" in dataset.columns:
            ds_labels = pd.to_numeric(dataset["label"], errors="coerce").fillna(-1).to_numpy(np.int64)
            fill = found & (labels < 0)
            labels[fill] = ds_labels[rows[fill]]
        same_order = bool(found.all()) and np.array_equal(rows, np.arange(n))
        for col in [c for c in dataset.columns if c == "label_name" or c.startswith("meta_")]:
            if same_order:
                table[col] = dataset[col].reset_index(drop=True)
            else:
                values = dataset[col].to_numpy(object)[np.where(found, rows, 0)]
                table[col] = pd.Series(np.where(found, values, None), dtype=object)
    table["label"] = labels
    return table


def _dataset_rows(dataset_ids: pd.Series, ids: np.ndarray) -> np.ndarray:
    """For each base instance, its row in the dataset (-1: not there); same order is checked in Arrow."""
    n = len(ids)
    if len(dataset_ids) == n:
        try:
            theirs = pa.array(dataset_ids, pa.large_string())
            if isinstance(theirs, pa.ChunkedArray):
                theirs = theirs.combine_chunks()
            same = theirs.equals(ids_to_arrow(ids))
        except (pa.ArrowException, TypeError, ValueError):
            same = False
        if same:
            return np.arange(n)
    index = pd.Index(np.asarray(dataset_ids.astype(str), dtype=object))
    return index.get_indexer(np.asarray(ids, dtype=object).astype(str))


def align(out: Outputs, ids: np.ndarray, index: Callable[[], pd.Index]) -> Alignment:
    """``out``'s rows for the base's ``ids``; ``index()`` returns the base ids' pd.Index (built once)."""
    n = len(ids)
    if same_ids(out.instance_ids, ids):
        return Alignment(None, np.ones(n, dtype=bool), True)
    pos = index().get_indexer(np.asarray(out.instance_ids, dtype=object))
    rows = np.full(n, -1, dtype=np.int64)
    rows[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
    valid = rows >= 0
    return Alignment(np.where(valid, rows, 0), valid, bool(valid.all()))


class ModelColumns:
    """The per-instance metric columns of ``models`` (key -> outputs, base first) against the base."""

    def __init__(self, base_key: str, outputs: Mapping[str, Outputs], alignments: Mapping[str, Alignment],
                 labels: np.ndarray, metrics: Mapping[str, BehaviourMetric]) -> None:
        self.base = base_key
        self.keys = list(outputs)
        self._outputs = dict(outputs)
        self._align = dict(alignments)
        self.labels = labels
        self.metrics = dict(metrics)
        self._values: dict[tuple[str, str], np.ndarray] = {}
        self._preds: dict[str, np.ndarray] = {}
        self._arrays: OrderedDict[str, ModelArrays] = OrderedDict()
        self._lock = threading.RLock()
        self._metric_locks: dict[str, threading.Lock] = {}

    @property
    def n(self) -> int:
        return len(self.labels)

    def valid(self, key: str) -> np.ndarray:
        return self._align[key].valid

    def predictions(self, key: str) -> np.ndarray:
        """(N,) float64 predictions aligned to the base, NaN where the model lacks the instance."""
        with self._lock:
            hit = self._preds.get(key)
        if hit is None:
            a, out = self._align[key], self._outputs[key]
            preds = np.asarray(out.predictions)
            if not len(preds):
                hit = np.full(self.n, np.nan)
            else:
                hit = preds.astype(np.float64) if a.rows is None else preds[a.rows].astype(np.float64)
            if not a.all_valid:
                hit[~a.valid] = np.nan
            with self._lock:
                self._preds[key] = hit
        return hit

    def values(self, metric: str, key: str) -> np.ndarray:
        """(N,) float64 per-instance values of ``metric`` for model ``key`` (NaN: not defined)."""
        hit = self._values.get((metric, key))
        if hit is None:
            self.compute(metric)
            hit = self._values[(metric, key)]
        return hit

    def compute(self, metric: str) -> None:
        """Compute ``metric``'s column for every model (once; concurrent callers wait for it)."""
        with self._lock:
            lock = self._metric_locks.setdefault(metric, threading.Lock())
        with lock:
            todo = [k for k in self.keys if (metric, k) not in self._values]
            if not todo:
                return
            spec = self.metrics[metric]
            base = self.arrays(self.base)
            n = self.n

            # The built-in metrics are row-wise: computed over blocks of rows that stay in the CPU's
            # cache (no model-sized temporaries). A registered metric gets whole arrays, as documented.
            blocks = ([slice(i, i + CHUNK_ROWS) for i in range(0, n, CHUNK_ROWS)]
                      if spec.fn.__module__ == ModelArrays.__module__ and n > CHUNK_ROWS else [slice(None)])

            def one(key: str) -> tuple[str, np.ndarray]:
                values = np.empty(n, np.float64)
                for rows in blocks:
                    if key == self.base:
                        b = m = base if rows == slice(None) else self._build(key, rows)
                    else:
                        b, m = (base if rows == slice(None) else RowBlock(base, rows)), self._build(key, rows)
                    got = np.asarray(spec.fn(b, m), dtype=np.float64)
                    if got.shape != (len(m.valid),):
                        raise ValueError(f"metric {metric!r} returned shape {got.shape}, expected ({n},)")
                    values[rows] = got
                if not self._align[key].all_valid:
                    values = np.where(self._align[key].valid, values, np.nan)
                return key, values

            if len(todo) > 1 and WORKERS > 1:
                with ThreadPoolExecutor(min(WORKERS, len(todo)), thread_name_prefix="mlflow-cc-behaviours") as pool:
                    results = list(pool.map(one, todo))
            else:
                results = [one(k) for k in todo]
            self._values.update(((metric, key), values) for key, values in results)

    def arrays(self, key: str) -> ModelArrays:
        """Model ``key``'s outputs aligned to the base (the base's kept, a few others cached)."""
        with self._lock:
            hit = self._arrays.get(key)
            if hit is not None:
                self._arrays.move_to_end(key)
                return hit
        built = self._build(key)
        with self._lock:
            self._arrays[key] = built
            others = [k for k in self._arrays if k != self.base]
            for k in others[:max(len(others) - KEEP_ARRAYS, 0)]:
                del self._arrays[k]
        return built

    def _build(self, key: str, rows: slice = slice(None)) -> ModelArrays:
        """Model ``key``'s arrays for the base's rows ``rows`` (all by default)."""
        a, out = self._align[key], self._outputs[key]
        valid, labels = a.valid[rows], self.labels[rows]
        n, k = len(labels), out.logits.shape[1]
        if len(out.instance_ids) == 0:
            logits = np.full((n, k), np.nan, np.float32)
        elif a.rows is None:
            logits = np.asarray(out.logits[rows], dtype=np.float32)  # no copy: read-only use below
        else:
            logits = np.array(np.asarray(out.logits)[a.rows[rows]], dtype=np.float32)
            logits[~valid] = np.nan
        preds = self.predictions(key)[rows] if len(out.instance_ids) else np.full(n, np.nan)
        return LazyModelArrays(labels, preds, logits, valid)


class LazyModelArrays(ModelArrays):
    """:class:`ModelArrays` whose softmax and log-softmax are computed when a metric first reads them.

    A metric that needs neither (correct, flip) costs no pass over the logits; one that
    needs the softmax (confidence) skips the log-softmax.
    """

    def __init__(self, labels: np.ndarray, predictions: np.ndarray, logits: np.ndarray, valid: np.ndarray) -> None:
        for name, value in (("labels", labels), ("predictions", predictions), ("logits", logits), ("valid", valid)):
            object.__setattr__(self, name, value)

    @cached_property
    def _shifted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shifted, exp, exp summed over classes), classes by rows: (K, N), (K, N), (N,).

        Shifted by each instance's max: exact and free of overflow (rows the model lacks stay
        NaN). Laid out one contiguous row per class, the per-instance max and sum are element-wise
        over K rows: about five times faster than reducing a few values per instance.
        """
        shifted = np.array(self.logits.T, order="C")  # always a copy: the logits are read-only
        shifted -= shifted.max(axis=0)
        exp = np.exp(shifted)
        return shifted, exp, exp.sum(axis=0)

    @cached_property
    def probs(self) -> np.ndarray:  # type: ignore[override]
        _, exp, total = self._shifted
        exp /= total  # exp is used for nothing else
        return exp.T

    @cached_property
    def log_probs(self) -> np.ndarray:  # type: ignore[override]
        shifted, _, total = self._shifted
        return (shifted - np.log(total)).T


class TableColumns:
    """Per-model values read from a wide table computed in full by the caller (the other outputs kinds)."""

    def __init__(self, table: pd.DataFrame, keys: Sequence[str]) -> None:
        self._table = table
        self.keys = list(keys)

    def values(self, metric: str, key: str) -> np.ndarray:
        col = f"{metric}{SEP}{key}"
        if col not in self._table.columns:
            return np.full(len(self._table), np.nan)
        return self._table[col].to_numpy(np.float64)

    def predictions(self, key: str) -> np.ndarray:
        return self.values("prediction", key)

    def valid(self, key: str) -> np.ndarray:
        return ~np.isnan(self.predictions(key))

    def compute(self, metric: str) -> None:
        """Nothing to do: every column is in the table."""

    def arrays(self, key: str) -> ModelArrays:
        raise NotImplementedError("a precomputed table has no aligned arrays")


class RowBlock(ModelArrays):
    """Rows ``rows`` (a slice) of another :class:`ModelArrays`; its softmax is sliced from the whole one's."""

    def __init__(self, whole: ModelArrays, rows: slice) -> None:
        for name in ("labels", "predictions", "logits", "valid"):
            object.__setattr__(self, name, getattr(whole, name)[rows])
        object.__setattr__(self, "_whole", whole)
        object.__setattr__(self, "_rows", rows)

    @property
    def probs(self) -> np.ndarray:  # type: ignore[override]
        return self._whole.probs[self._rows]

    @property
    def log_probs(self) -> np.ndarray:  # type: ignore[override]
        return self._whole.log_probs[self._rows]


def subset(arrays: ModelArrays, rows: np.ndarray) -> ModelArrays:
    """The rows ``rows`` (a mask or indices) of aligned arrays."""
    return ModelArrays(labels=arrays.labels[rows], predictions=arrays.predictions[rows],
                       logits=arrays.logits[rows], probs=arrays.probs[rows],
                       log_probs=arrays.log_probs[rows], valid=arrays.valid[rows])


def dense(columns: ModelColumns, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Every column of ``metrics`` for every model, ``<metric>|<model>`` (prediction first per model)."""
    out: dict[str, np.ndarray] = {}
    for metric in metrics:
        columns.compute(metric)
    for key in columns.keys:
        out[f"prediction{SEP}{key}"] = columns.predictions(key)
        for metric in metrics:
            out[f"{metric}{SEP}{key}"] = columns.values(metric, key)
    return out
