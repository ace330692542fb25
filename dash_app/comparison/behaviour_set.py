"""A loaded behaviour comparison and the questions the Behaviours grid asks it: rows per class, subgroup or instance for one metric, absolute or relative; header summaries; the most frequent prediction changes; drill-downs and previews.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from cachetools import LRUCache
from mlflow.tracking import MlflowClient

from dash_app.comparison.preview_index import PreviewIndex
from mlflow_cc.analysis.behaviour_columns import ids_to_arrow
from mlflow_cc.analysis.behaviour_kinds import instance_text_columns
from mlflow_cc.analysis.behaviour_runs import load_compared_outputs
from mlflow_cc.analysis.behaviours import (
    Behaviours,
    Page,
    column,
    compare_behaviours,
    page,
)
from mlflow_cc.artifacts import DatasetInfo, Outputs


@dataclass
class Drill:
    """Rows restricted to one class (``kind`` "class", ``value`` its index) or subgroup."""

    kind: str  # "class" | "subgroup"
    value: str
    attribute: str = ""  # the subgroup's attribute (without ``meta_``)

    @classmethod
    def parse(cls, text: str | None) -> Drill | None:
        """``class:3`` or ``subgroup:group=rare`` (the URL form); None for anything else."""
        if not text or ":" not in text:
            return None
        kind, _, rest = text.partition(":")
        if kind == "class" and rest.lstrip("-").isdigit():
            return cls("class", rest)
        if kind == "subgroup" and "=" in rest:
            attr, _, value = rest.partition("=")
            return cls("subgroup", value, attr)
        return None

    def text(self) -> str:
        return f"class:{self.value}" if self.kind == "class" else f"subgroup:{self.attribute}={self.value}"


@dataclass
class BehaviourSet:
    """Behaviour metrics of ``models`` (run ids, base first) against ``base``.

    ``behaviours`` is None when the base itself has no readable outputs (``problem``
    says why); models without outputs are listed in ``unavailable`` with the reason
    ("not logged", "unreadable", "too large") and have empty columns.
    """

    base: str
    models: list[str]
    behaviours: Behaviours | None
    unavailable: dict[str, str] = field(default_factory=dict)
    dataset: DatasetInfo | None = None
    problem: str | None = None
    preview_index: PreviewIndex | None = None
    _tables: LRUCache[tuple[Hashable, ...], pd.DataFrame] = field(default_factory=lambda: LRUCache(maxsize=16),
                                                                  repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _key_series: pd.Series | None = field(default=None, repr=False)
    #: Paired significance per (metric, level): see dash_app.comparison.significance_set.
    _significance: dict[tuple[str, float], pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def metrics(self) -> list[str]:
        """Per-instance metrics that can be shown (registered ones included)."""
        return self.behaviours.instance_metrics if self.behaviours is not None else []

    @property
    def kind(self) -> str:
        """The outputs kind compared ("classification", "generation", "regression", "embedding")."""
        return getattr(self.behaviours, "kind", "classification")

    @property
    def compared(self) -> list[str]:
        """Models that have outputs (the base first)."""
        return self.behaviours.models if self.behaviours is not None else []

    def subgroup_attributes(self) -> list[str]:
        if self.behaviours is None:
            return []
        return [c[len("meta_"):] for c in self.behaviours.subgroup_columns]

    def higher_is_better(self, metric: str) -> bool:
        if self.behaviours is None or metric not in self.behaviours.metrics:
            return True
        return self.behaviours.metrics[metric].higher_is_better

    # -- tables ------------------------------------------------------------------
    def table(self, mode: str, metric: str, relative: bool, drill: Drill | None = None) -> pd.DataFrame:
        """Rows for the grid, one value column ``v<i>`` per model (i = index in :attr:`models`).

        ``classes``: ``key`` (class index), ``name``, ``count``; ``subgroups``:
        ``key`` ("attribute=value"), ``name``, ``count``; ``instances``: ``key``
        (instance id), ``label``, ``name`` (class name) and ``p<i>`` predictions.
        ``relative``: each model's value minus the base's (the base column keeps its
        absolute value). Models without outputs have NaN columns. Cached per arguments.
        """
        key = (mode, metric, relative, drill.text() if drill else None)
        with self._lock:
            hit = self._tables.get(key)
        if hit is not None:
            return hit
        table = self._build_table(mode, metric, relative, drill)
        with self._lock:
            self._tables[key] = table
        return table

    def _build_table(self, mode: str, metric: str, relative: bool, drill: Drill | None) -> pd.DataFrame:
        b = self.behaviours
        if b is None or metric not in b.metrics:
            return pd.DataFrame({"key": pd.Series(dtype=object), "name": pd.Series(dtype=object),
                                 "count": pd.Series(dtype=np.int64)})
        if mode == "classes":
            agg = b.by_class()
            frame = pd.DataFrame({"key": agg["label"].astype(str), "name": agg["label_name"].astype(str),
                                  "count": agg["count"].astype(np.int64)})
        elif mode == "subgroups":
            agg = b.by_subgroup()
            frame = pd.DataFrame({"key": (agg["attribute"].astype(str) + "=" + agg["value"].astype(str))
                                  if len(agg) else pd.Series(dtype=object),
                                  "name": (agg["attribute"].astype(str) + ": " + agg["value"].astype(str))
                                  if len(agg) else pd.Series(dtype=object),
                                  "count": agg["count"].astype(np.int64)})
        elif self.kind != "classification":  # --- gen-kinds: answers as text (a table computed in full)
            agg = b.instances
            rows = self._drill_mask(drill)
            if rows is not None:
                agg = agg.loc[rows]
            labels = agg["label"].to_numpy()
            frame = pd.DataFrame({"key": agg["instance_id"].astype(str).to_numpy(), "label": labels,
                                  "name": self._names(labels)})
            for i in range(len(self.models)):
                frame[f"p{i}"] = np.nan  # no class predictions
            for name, values in instance_text_columns(b, agg, self.models).items():
                frame[name] = values
        else:  # one column per model of this metric only, straight from the computed arrays
            rows = self._drill_mask(drill)
            keys = self._keys()
            labels = b.labels
            if rows is not None:
                keys, labels = keys[rows], labels[rows]
            # The class names stay Python objects (shared, one per class): a str column would copy
            # every row's name into Arrow.
            cols: dict[str, Any] = {"key": keys.reset_index(drop=True), "label": labels,
                                    "name": pd.Series(self._names(labels), dtype=object, copy=False)}
            for i, run_id in enumerate(self.models):
                preds = b.predictions(run_id) if run_id in b.models else None
                cols[f"p{i}"] = np.full(len(labels), np.nan) if preds is None else (
                    preds if rows is None else preds[rows])
            base_values = b.values(metric, b.base)
            for i, run_id in enumerate(self.models):
                if run_id not in b.models:
                    cols[f"v{i}"] = np.full(len(labels), np.nan)
                    continue
                values = b.values(metric, run_id)
                values = values - base_values if relative and run_id != b.base else values
                cols[f"v{i}"] = values if rows is None else values[rows]
            return pd.DataFrame(cols, copy=False)
        base_values = agg[column(metric, b.base)].to_numpy(np.float64)
        for i, run_id in enumerate(self.models):
            col = column(metric, run_id)
            if col not in agg.columns:
                frame[f"v{i}"] = np.nan
                continue
            values = agg[col].to_numpy(np.float64)
            frame[f"v{i}"] = values - base_values if relative and run_id != b.base else values
        return frame.reset_index(drop=True)

    def _keys(self) -> pd.Series:
        """The instance ids as an Arrow-backed string column (built once, no Python string per row)."""
        with self._lock:
            if self._key_series is None and self.behaviours is not None:
                self._key_series = pd.Series(pd.arrays.ArrowStringArray(ids_to_arrow(self.behaviours.instance_ids)))
            return self._key_series

    def _drill_mask(self, drill: Drill | None) -> np.ndarray | None:
        b = self.behaviours
        if drill is None or b is None:
            return None
        if drill.kind == "class":
            return b.labels == int(drill.value)
        col = f"meta_{drill.attribute}"
        if col not in b.base_columns:
            return np.zeros(len(b), bool)
        return pd.Series(b.base_columns[col]).astype(str).to_numpy() == drill.value

    def _names(self, labels: np.ndarray) -> np.ndarray:
        names = self.behaviours.class_names if self.behaviours is not None else []
        lookup = np.array([*names, ""], dtype=object)
        idx = np.where((labels >= 0) & (labels < len(names)), labels, len(names))
        out = lookup[idx]
        missing = out == ""
        out[missing] = labels[missing].astype(str)
        return out

    def page(self, mode: str, metric: str, relative: bool, *, drill: Drill | None = None,
             sort: Sequence[tuple[str, bool]] = (), filters: Sequence[tuple[str, str, Any]] = (),
             offset: int = 0, limit: int = 100) -> Page:
        """One page of :meth:`table`: sorted by ``sort`` ((column, ascending), first wins), filtered."""
        table = self.table(mode, metric, relative, drill)
        known = [(c, op, v) for c, op, v in filters if c in table.columns]
        sort_by, ascending = next(((c, a) for c, a in sort if c in table.columns), (None, True))
        if sort_by is None and mode == "instances":
            sort_by = None  # instances keep the dataset's order
        return page(table, sort_by=sort_by, ascending=ascending, filters=known, offset=offset, limit=limit)

    def preview_kind(self) -> str | None:
        """"image" or "text" (the kind of the first instance's preview), None without previews."""
        if self.behaviours is None or not len(self.behaviours):
            return None
        first = self.previews([str(self.behaviours.instance_ids[0])])
        return next(iter(first.values()))[0] if first else None

    def previews(self, instance_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(kind, value) previews of the given instances, by id (a page's worth)."""
        if self.preview_index is not None:
            return self.preview_index.lookup(instance_ids)
        if self.dataset is None:
            return {}
        return {i: (p.kind, p.value) for i, p in self.dataset.previews(instance_ids).items()}

    # -- header summaries -------------------------------------------------------
    def summaries(self, metric: str, relative: bool, bins: int = 16) -> list[dict[str, Any]]:
        """Per model (in :attr:`models` order): dataset-wide value and a histogram of per-instance values.

        ``value``: mean over instances (relative: minus the base's); ``counts``: the
        histogram over bins shared by all models (so sparklines compare); ``edges``:
        the bin edges; ``missing``: the reason a model has no outputs, else None.
        """
        b = self.behaviours
        out: list[dict[str, Any]] = []
        if b is None or metric not in b.metrics:
            return [{"value": math.nan, "counts": [], "edges": [], "missing": self.unavailable.get(r, self.problem)}
                    for r in self.models]
        base = b.values(metric, b.base)
        values: dict[str, np.ndarray] = {}
        for run_id in self.models:
            if run_id in b.models:
                v = b.values(metric, run_id)
                values[run_id] = v - base if relative and run_id != b.base else v
        finite = [v[np.isfinite(v)] for v in values.values()]
        finite = [v for v in finite if v.size]
        lo = min((float(v.min()) for v in finite), default=0.0)
        hi = max((float(v.max()) for v in finite), default=1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for run_id in self.models:
            if run_id not in values:
                out.append({"value": math.nan, "counts": [], "edges": [], "missing": self.unavailable.get(run_id)})
                continue
            v = values[run_id]
            v = v[np.isfinite(v)]
            counts = np.histogram(v, bins=edges)[0] if v.size else np.zeros(bins, np.int64)
            out.append({"value": float(v.mean()) if v.size else math.nan, "counts": counts.tolist(),
                        "edges": edges.tolist(), "missing": None})
        return out

    def prediction_changes(self, top: int = 5) -> dict[str, list[dict[str, Any]]]:
        """Per model: the ``top`` most frequent base→model prediction changes (names, count, fraction)."""
        if self.behaviours is None:
            return {}
        table = self.behaviours.prediction_changes(top=top)
        out: dict[str, list[dict[str, Any]]] = {r: [] for r in self.models if r != self.base}
        for row in table.itertuples(index=False):
            out.setdefault(str(row.model), []).append({
                "base": str(row.base_prediction_name), "model": str(row.model_prediction_name),
                "count": int(row.count), "fraction": float(row.fraction)})
        return out


def load_behaviour_set(client: MlflowClient, base: str, run_ids: Sequence[str],
                       datasets: Mapping[str, str] | None = None,
                       outputs_cache: Callable[[str], Outputs] | None = None) -> BehaviourSet:
    """Read the outputs of ``run_ids`` and compare them with ``base``'s.

    ``datasets``: dataset name -> dataset run id (the reader's), used when a run's
    outputs do not name their dataset run. ``outputs_cache(run_id)``: how to read one
    run's outputs (default :func:`load_outputs`); raises :class:`ArtifactError`.
    """
    models = list(dict.fromkeys([base, *run_ids]))
    loaded = load_compared_outputs(client, base, run_ids, datasets=datasets, load=outputs_cache)
    if loaded.base is None:
        reason = loaded.unavailable.get(base, "not logged")
        return BehaviourSet(base, models, None, loaded.unavailable,
                            problem=f"the base model's outputs are {reason}: choose another base")
    dataset = loaded.dataset  # previews and subgroups are optional; the comparison works without
    behaviours = compare_behaviours(
        loaded.base, loaded.models, base_key=base,
        dataset=dataset.instances if dataset is not None else None,
        class_names=dataset.class_names if dataset is not None else None)
    previews = (PreviewIndex(client, loaded.dataset_run_id, dataset.previews_path)
                if dataset is not None and loaded.dataset_run_id else None)
    return BehaviourSet(base, models, behaviours, loaded.unavailable, dataset, preview_index=previews)
