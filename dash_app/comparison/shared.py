"""Layer comparisons shared by every worker of a machine: computed once, kept on disk.

gunicorn workers are processes; a layer comparison polled by a browser lands on any of
them, and each would compute it again (hundreds of MB and seconds of CPU for a large
model). :class:`SharedLayerStore` keys a comparison by (tracking store, kind, base, models)
and keeps it in ``<cache>/layer-comparisons/``:

* the first worker asked takes an exclusive ``fcntl`` lock on the key's lock file,
  computes, writes the result (``<key>.npz``, written to a temporary name and renamed, so
  a reader never sees half a file) and releases the lock;
* a worker asked meanwhile waits on the same lock, then loads the file instead of
  computing; later askers load it directly; the computing worker writes its progress to
  ``<key>.progress`` so the others can show it.

Each computation appends one line to ``computed.log`` (time, process id, kind, key).
The files hold numbers, strings and JSON only, read with ``allow_pickle=False``: a file
in the cache can never run code. Before a stored result is served, the asking user's own
MLflow client reads every compared run, as a computation would have.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dash_app.comparison.layer_set import LayerSet
from mlflow_cc.analysis.layer_compare import LayerComparison, TensorHistogram

#: Bump when the file layout changes: older files are then ignored (and recomputed).
FORMAT_VERSION = 1
COMPUTED_LOG = "computed.log"


class SharedLayerStore:
    """On-disk layer comparisons of one tracking store, computed once across processes."""

    def __init__(self, directory: Path, store_key: str) -> None:
        self.directory = directory
        self.store_key = store_key

    def key(self, kind: str, base: str, models: Sequence[str]) -> str:
        text = json.dumps([FORMAT_VERSION, self.store_key, kind, base, list(models)])
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}{suffix}"

    def compute_once(self, kind: str, base: str, models: Sequence[str],
                     compute: Callable[[Callable[[int, int], None]], LayerSet],
                     verify: Callable[[], bool] = lambda: True) -> LayerSet:
        """The stored comparison, else ``compute(progress)`` under a lock that other processes wait on.

        ``verify()`` is asked before a stored result is served (may this user read every run?);
        when it says no, the comparison is computed for this caller alone and not stored.
        """
        key = self.key(kind, base, models)
        found = self.load(key)
        if found is not None:
            return found if verify() else compute(_no_progress)
        with self._locked(key):
            found = self.load(key)  # computed by another worker while this one waited
            if found is not None:
                return found if verify() else compute(_no_progress)
            progress_path = self._path(key, ".progress")
            try:
                result = compute(lambda done, total: _write_atomic(progress_path, f"{done} {total}".encode()))
                if result.comparison is not None:  # a problem (no base tensors) may be fixed later: not kept
                    self.save(key, result)
                    with open(self.directory / COMPUTED_LOG, "a") as log:
                        log.write(f"{time.time():.3f} pid={os.getpid()} kind={kind} key={key}\n")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    progress_path.unlink()
        return result

    def progress(self, kind: str, base: str, models: Sequence[str]) -> tuple[int, int] | None:
        """(done, total) of a computation running in any process, else None."""
        try:
            done, total = self._path(self.key(kind, base, models), ".progress").read_text().split()
            return int(done), int(total)
        except (FileNotFoundError, ValueError):
            return None

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._path(key, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- files ------------------------------------------------------------------------------
    def save(self, key: str, data: LayerSet) -> None:
        comparison = data.comparison
        assert comparison is not None
        arrays: dict[str, np.ndarray] = {}
        columns: list[dict[str, Any]] = []
        for i, col in enumerate(comparison.tensors.columns):
            values = comparison.tensors[col]
            if values.dtype.kind in "biuf":
                arrays[f"t{i}"] = values.to_numpy()
                columns.append({"name": col, "array": f"t{i}"})
            else:  # strings, shapes (lists), None: as JSON
                columns.append({"name": col, "json": [None if _missing(v) else _plain(v) for v in values]})
        hist_names = list(comparison.histograms)
        for i, name in enumerate(hist_names):
            hist = comparison.histograms[name]
            arrays[f"e{i}"] = hist.edges
            for j, model in enumerate(comparison.models):
                if model in hist.counts:
                    arrays[f"c{i}_{j}"] = hist.counts[model]
        meta = {"version": FORMAT_VERSION, "kind": data.kind, "base": data.base, "models": data.models,
                "unavailable": data.unavailable, "comparison": {
                    "kind": comparison.kind, "base": comparison.base, "models": comparison.models,
                    "unavailable": comparison.unavailable, "columns": columns, "histograms": hist_names}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path(key, f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._path(key, ".npz"))

    def load(self, key: str) -> LayerSet | None:
        """The stored comparison, or None (absent, of another format version, or unreadable)."""
        try:
            with np.load(self._path(key, ".npz"), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes())
                if meta.get("version") != FORMAT_VERSION:
                    return None
                c = meta["comparison"]
                table = pd.DataFrame({col["name"]: npz[col["array"]] if "array" in col else col["json"]
                                      for col in c["columns"]})
                histograms = {}
                for i, name in enumerate(c["histograms"]):
                    counts = {model: npz[f"c{i}_{j}"] for j, model in enumerate(c["models"])
                              if f"c{i}_{j}" in npz.files}
                    histograms[name] = TensorHistogram(npz[f"e{i}"], counts)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        comparison = LayerComparison(kind=c["kind"], base=c["base"], models=c["models"], tensors=table,
                                     histograms=histograms, unavailable=c["unavailable"])
        return LayerSet(meta["kind"], meta["base"], meta["models"], comparison, meta["unavailable"])


def _no_progress(done: int, total: int) -> None:
    pass


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A JSON-able copy of a table cell (shapes are lists or tuples; numpy scalars become Python's)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
