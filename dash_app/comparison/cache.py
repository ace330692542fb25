"""Computed comparisons of one store, cached by (kind, base, run ids), with background layer computations and their progress.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from cachetools import LRUCache
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dash_app.comparison.behaviour_set import BehaviourSet, load_behaviour_set
from dash_app.comparison.layer_set import LayerSet, load_layer_set
from dash_app.comparison.shared import SharedLayerStore
from mlflow_cc.artifacts import Outputs, load_outputs
from mlflow_cc.errors import ArtifactError

#: Arrow's allocator in the app's process: the C library's, unless ``ARROW_DEFAULT_MEMORY_POOL`` names one.
#: Reading a dozen outputs files of a million instances (about 600 MB of Arrow buffers, most freed
#: again) took twice the CPU with Arrow's bundled mimalloc on Linux, nearly all of it system time
#: spent faulting in memory it had handed back (measured by benchmarks/comparison.py).
if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    pa.set_memory_pool(pa.system_memory_pool())


class Comparisons:
    """Computed comparisons of one store, cached by (kind, base, run ids).

    Outputs are cached per run (a logged artifact does not change); behaviour and
    layer comparisons per key, least recently used dropped first. Layer comparisons
    of large models take seconds: :meth:`layers` runs at most one computation per key
    at a time and reports progress through :meth:`progress`.
    """

    def __init__(self, client: MlflowClient, datasets: Callable[[], Mapping[str, str]] | None = None,
                 size: int = 8, shared: SharedLayerStore | None = None) -> None:
        self.client = client
        #: Layer comparisons computed once for every worker of the machine (see dash_app.comparison.shared).
        self.shared = shared
        self._datasets = datasets or dict
        self._size = size
        self._lock = threading.Lock()
        self._cache: LRUCache[tuple[Hashable, ...], Any] = LRUCache(maxsize=size)
        self._outputs: LRUCache[str, Outputs | ArtifactError] = LRUCache(maxsize=64)
        self._key_locks: dict[tuple[Hashable, ...], threading.Lock] = {}
        self._progress: dict[tuple[Hashable, ...], tuple[int, int]] = {}

    def behaviours(self, base: str, run_ids: Sequence[str]) -> BehaviourSet:
        """The behaviour comparison of ``run_ids`` against ``base`` (computed once per key)."""
        key = ("behaviours", base, tuple(dict.fromkeys(run_ids)))
        return self._get(key, lambda: load_behaviour_set(self.client, base, list(key[2]), self._datasets(),
                                                        outputs_cache=self._load_outputs))

    def layers(self, base: str, run_ids: Sequence[str], kind: str = "weights") -> LayerSet:
        """The ``kind`` layer comparison of ``run_ids`` against ``base`` (computed once per key)."""
        key = (kind, base, tuple(dict.fromkeys(run_ids)))

        def compute() -> LayerSet:
            def progress(done: int, total: int) -> None:
                self._progress[key] = (done, total)
            try:
                if self.shared is None:
                    return load_layer_set(self.client, base, list(key[2]), kind, progress=progress)

                def compute_shared(disk_progress: Callable[[int, int], None]) -> LayerSet:
                    def both(done: int, total: int) -> None:
                        progress(done, total)
                        disk_progress(done, total)
                    return load_layer_set(self.client, base, list(key[2]), kind, progress=both)
                return self.shared.compute_once(kind, base, _models(base, key[2]), compute_shared,
                                                verify=lambda: self._may_read(_models(base, key[2])))
            finally:
                self._progress.pop(key, None)
        return self._get(key, compute)

    def _may_read(self, run_ids: Sequence[str]) -> bool:
        """Whether this client (the user's own, on a team server) reads every run, as a computation would."""
        try:
            for run_id in run_ids:
                self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def layers_in_background(self, base: str, run_ids: Sequence[str], kind: str = "weights") -> LayerSet | None:
        """The layer comparison if cached, else None after starting it in a thread (see :meth:`progress`)."""
        key = (kind, base, tuple(dict.fromkeys(run_ids)))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            if key in self._progress or key in self._key_locks:
                return None  # already being computed
            self._progress[key] = (0, 0)
        thread = threading.Thread(target=self._background, args=(base, list(key[2]), kind), daemon=True,
                                  name=f"mlflow-cc-layers-{kind}")
        thread.start()
        return None

    def _background(self, base: str, run_ids: list[str], kind: str) -> None:
        key = (kind, base, tuple(run_ids))
        try:
            self.layers(base, run_ids, kind)
        except Exception as exc:  # noqa: BLE001 - reported to the app instead of dying silently
            with self._lock:
                self._cache[key] = LayerSet(kind, base, list(run_ids), None, {},
                                            problem=f"layer comparison failed: {exc}")
        finally:
            self._progress.pop(key, None)

    def progress(self, base: str, run_ids: Sequence[str], kind: str = "weights") -> tuple[int, int] | None:
        """(tensors done, total) of a layer comparison being computed (by any worker when shared), else None."""
        mine = self._progress.get((kind, base, tuple(dict.fromkeys(run_ids))))
        if self.shared is not None and (mine is None or not mine[1]):
            return self.shared.progress(kind, base, _models(base, run_ids)) or mine
        return mine

    def is_cached(self, key_kind: str, base: str, run_ids: Sequence[str]) -> bool:
        with self._lock:
            return (key_kind, base, tuple(dict.fromkeys(run_ids))) in self._cache

    def _get(self, key: tuple[Hashable, ...], compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second request for the same key waits for the first
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            value = compute()
            with self._lock:
                self._cache[key] = value
                self._key_locks.pop(key, None)
        return value

    def _load_outputs(self, run_id: str) -> Outputs:
        with self._lock:
            hit = self._outputs.get(run_id)
        if hit is None:
            try:
                hit = load_outputs(self.client, run_id)
            except ArtifactError as exc:
                if exc.reason != "not logged":  # "not logged" may change: a run can still log it
                    with self._lock:
                        self._outputs[run_id] = exc
                raise
            with self._lock:
                self._outputs[run_id] = hit
        if isinstance(hit, ArtifactError):
            raise hit
        return hit


def _models(base: str, run_ids: Sequence[str]) -> list[str]:
    """The compared models, base first (as :func:`load_layer_set` orders them)."""
    return list(dict.fromkeys([base, *run_ids]))
