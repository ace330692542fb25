"""Where the app's data comes from: one reader per experiment, and per-forest caches.

Views ask this object, never MLflow. Everything derived from a forest (tooltips,
layouts, Pareto fronts) is cached against the forest object, which the reader
replaces whenever a refresh finds a change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from dash_app.comparison import Comparisons
from dash_app.comparison.shared import SharedLayerStore
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.read.lineage import Forest
from mlflow_cc.read.reader import ExperimentReader, list_experiments
from mlflow_cc.track.flags import FlagBoard

ReaderFactory = Callable[[str], ExperimentReader]


def default_ui_url(tracking_uri: str) -> str:
    """The MLflow UI for a store: the tracking server itself, else a local ``mlflow ui``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"


class DataSource:
    """Readers by experiment id, created on demand by ``factory``."""

    def __init__(self, factory: ReaderFactory, first: ExperimentReader | None = None,
                 mlflow_ui_url: str | None = None, cache_size: int = 64) -> None:
        self._factory = factory
        self._readers: dict[str, ExperimentReader] = {}
        self._lock = threading.Lock()
        self._cache: LRUCache[tuple[Hashable, ...], Any] = LRUCache(maxsize=cache_size)
        self.default_experiment: str | None = None
        if first is not None:
            self._readers[first.experiment_id] = first
            self.default_experiment = first.experiment_id
        self._ui_url = mlflow_ui_url
        self._comparisons: dict[str, tuple[Comparisons, FlagBoard]] = {}
        #: Where layer comparisons are shared with the other worker processes (None: this process only).
        self.shared_layers_dir: Path | None = None

    # -- readers -------------------------------------------------------------------
    def reader(self, experiment: str | None) -> ExperimentReader:
        """The reader of ``experiment`` (id or name); the default one when ``None``."""
        key = experiment or self.default_experiment
        if key is None:
            raise LookupError("no experiment chosen")
        with self._lock:
            if key in self._readers:
                return self._readers[key]
            for r in self._readers.values():
                if r.experiment_name == key:
                    return r
            reader = self._factory(key)
            self._readers[reader.experiment_id] = reader
            if self.default_experiment is None:
                self.default_experiment = reader.experiment_id
            return reader

    def experiments(self) -> list[dict[str, Any]]:
        """Active experiments of the store: [{"id", "name"}]."""
        base = next(iter(self._readers.values()), None)
        if base is None:
            return []
        return list_experiments(base.client)

    def forest(self, experiment: str | None) -> Forest:
        return self.reader(experiment).forest()

    def metric_info(self, experiment: str | None) -> dict[str, MetricInfo]:
        reader = self.reader(experiment)
        reader.forest()
        return reader.metric_info

    def refresh(self, experiment: str | None) -> Forest:
        """Ask the store for new or still-running runs (incremental)."""
        return self.reader(experiment).refresh()

    # -- links -------------------------------------------------------------------
    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The run's page in the MLflow UI."""
        reader = self.reader(experiment_id)
        base = self._ui_url or default_ui_url(reader.tracking_uri)
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    # -- per-forest cache ----------------------------------------------------------
    def cached(self, forest: Forest, key: tuple[Hashable, ...], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per (forest object, key)."""
        full = (id(forest), *key)
        with self._lock:
            hit = self._cache.get(full)
        if hit is not None and hit[0] is forest:
            return hit[1]
        value = compute()
        with self._lock:
            self._cache[full] = (forest, value)
        return value

    # -- Performance Comparison ------------------------------------------------------
    def comparisons(self, experiment: str | None) -> Comparisons:
        """Cached behaviour and layer comparisons of the experiment's store (see dash_app.comparison)."""
        return self._comparison_pair(experiment)[0]

    def flags(self, experiment: str | None) -> FlagBoard:
        """Review flags of the experiment's runs, read with a short time-to-live (see mlflow_cc.track.flags)."""
        return self._comparison_pair(experiment)[1]

    def _comparison_pair(self, experiment: str | None) -> tuple[Comparisons, FlagBoard]:
        reader = self.reader(experiment)
        with self._lock:
            pair = self._comparisons.get(reader.experiment_id)
            if pair is None:
                shared = (SharedLayerStore(self.shared_layers_dir, reader.tracking_uri)
                          if self.shared_layers_dir is not None else None)
                pair = (Comparisons(reader.client, lambda: reader.datasets, shared=shared), FlagBoard(reader.client))
                self._comparisons[reader.experiment_id] = pair
            return pair
