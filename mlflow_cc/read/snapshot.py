"""An on-disk snapshot of what an :class:`~mlflow_cc.read.reader.ExperimentReader` has read.

A cold open of an experiment pages through every run (about 15 s for 10,000 runs
over HTTP). With a snapshot, a reopen loads the nodes read last time and asks the
store only for what changed since (one incremental refresh), so it costs about one
refresh. The snapshot is a cache, never a source of truth:

* the store is always asked: a reopen is load + one incremental query, which also
  proves the user can still read the experiment; a permission error discards the
  snapshot and nothing from it is served;
* a snapshot is keyed by tracking URI + experiment id + the user's identity (a hash
  of the username, or of the token, the reader's client sends), so one user is never
  served another user's data; the file also records the key's parts and is refused
  if they do not match;
* files are JSON (no pickle; written and parsed with ``orjson``), schema-versioned. Version
  3 holds one list per node field (``columns``: a 50,000-run snapshot is parsed, checked a
  column at a time and turned into nodes in about 0.2 s of CPU); version-2 files (one record
  per node) are still read. Non-finite metric values, which JSON cannot hold, are written
  as the strings ``"NaN"``/``"Infinity"``/``"-Infinity"`` and listed by node index under
  ``nonfinite``; a corrupt, truncated or unknown-version file is ignored (and removed),
  never trusted;
* writes are atomic (temp file + rename in the same folder), so gunicorn workers
  sharing the folder never read a half-written file; a reader hands its writes to a
  :class:`SnapshotWriter` thread, so a refresh does not wait for one; files are private
  to the OS user (mode 0600 in a 0700 folder).

Folder: ``$MLFLOW_CC_CACHE_DIR/snapshots`` (default ``~/.cache/mlflow-cc/snapshots``),
the cache that every app worker on a machine shares.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson
from mlflow.tracking import MlflowClient

from mlflow_cc.artifacts.files import cache_dir
from mlflow_cc.read.lineage import ModelNode

_log = logging.getLogger(__name__)

#: Bumped whenever the file layout or the meaning of a node field changes. 3: one list per node
#: field (``columns``) instead of one record per node; version-2 files are still read.
SNAPSHOT_VERSION = 3
#: The versions :meth:`SnapshotStore.load` reads.
READABLE_VERSIONS = (2, 3)
#: Part of the file key; kept at 2 so a newer version finds (and replaces) the files of earlier ones.
KEY_VERSION = 2
FORMAT = "mlflow-cc-reader-snapshot"
#: The ModelNode fields a snapshot keeps (what the store said; nothing derived).
NODE_FIELDS = ("run_id", "name", "experiment_id", "declared_parent_id", "operation", "op_params",
               "step", "inputs", "metrics", "params", "tags", "status", "start_time", "end_time",
               "failure_reason")


def node_record(node: ModelNode) -> dict[str, Any]:
    """The stored fields of a node (also used to tell whether a refetched run changed)."""
    fields = node.__dict__
    return {f: fields[f] for f in NODE_FIELDS}


def user_identity(client: MlflowClient) -> str:
    """Who the client reads as: a hash of its username or token ("" when it sends none).

    Passwords are never part of it: the key must not become a password oracle on disk.
    """
    # A per-user client (:class:`~mlflow_cc.read.user_client.UserClient`) names its user;
    # any other client sends the process's credentials, which MLflow takes from the environment.
    username = getattr(client, "username", None) or os.environ.get("MLFLOW_TRACKING_USERNAME") or ""
    token = "" if getattr(client, "username", None) else os.environ.get("MLFLOW_TRACKING_TOKEN") or ""
    if not username and not token:
        return ""
    raw = f"user:{username}" if username else "token:" + hashlib.sha256(token.encode()).hexdigest()
    return hashlib.sha256(raw.encode()).hexdigest()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (bulk creation of objects that are all kept)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class Snapshot:
    """What a reader had read: its nodes, dataset runs and the newest start time seen."""

    nodes: list[ModelNode]
    datasets: dict[str, str]
    max_start: int
    saved_at: float = field(default_factory=time.time)

    @property
    def running(self) -> list[str]:
        """Runs that were still running; a refresh asks the store about them again."""
        return [n.run_id for n in self.nodes if n.is_running]


class SnapshotStore:
    """Snapshots in one folder, one JSON file per (tracking URI, experiment, user)."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_dir() / "snapshots"

    @staticmethod
    def key(tracking_uri: str, experiment_id: str, user: str) -> str:
        """The file key: a hash, so no URI, name or user appears in the file name."""
        raw = json.dumps([KEY_VERSION, _strip_userinfo(tracking_uri), str(experiment_id), user])
        return hashlib.sha256(raw.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, tracking_uri: str, experiment_id: str, user: str) -> Snapshot | None:
        """The snapshot for this key, or None when absent, corrupt, foreign or of another version."""
        path = self.path(self.key(tracking_uri, experiment_id, user))
        try:
            with gc_paused():  # 50,000 nodes are ~1M new containers: no collection passes meanwhile
                doc = orjson.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") not in READABLE_VERSIONS:
                raise ValueError(f"not a snapshot of version {' or '.join(map(str, READABLE_VERSIONS))}")
            expected = {"tracking_uri": _strip_userinfo(tracking_uri), "experiment_id": str(experiment_id),
                        "user": user}
            if any(doc.get(k) != v for k, v in expected.items()):
                raise ValueError("snapshot belongs to another store, experiment or user")
            with gc_paused():
                nodes = (_nodes(doc["columns"], doc.get("nonfinite", ()), str(experiment_id)) if doc["version"] == 3
                         else _nodes_v2(doc["nodes"], doc.get("nonfinite", ()), str(experiment_id)))
            datasets = {str(k): str(v) for k, v in dict(doc["datasets"]).items()}
            return Snapshot(nodes, datasets, int(doc["max_start"]), float(doc["saved_at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            _log.info("mlflow-cc: ignoring unusable reader snapshot %s (%s)", path.name, exc)
            self._remove(path)
            return None

    def save(self, tracking_uri: str, experiment_id: str, user: str, snapshot: Snapshot) -> Path | None:
        """Write atomically; returns the path, or None when the folder is not writable."""
        path = self.path(self.key(tracking_uri, experiment_id, user))
        fields = [n.__dict__ for n in snapshot.nodes]
        columns = {f: [d[f] for d in fields] for f in COLUMNS}
        metrics = columns["metrics"]
        # A sum is finite when every term is (an overflow only sends a node down the exact path).
        nonfinite = [i for i, m in enumerate(metrics) if not math.isfinite(sum(m.values()))]
        for i in nonfinite:
            metrics[i] = {k: v if math.isfinite(v) else _nonfinite_text(v) for k, v in metrics[i].items()}
        doc = {"format": FORMAT, "version": SNAPSHOT_VERSION, "tracking_uri": _strip_userinfo(tracking_uri),
               "experiment_id": str(experiment_id), "user": user, "saved_at": snapshot.saved_at,
               "max_start": snapshot.max_start, "datasets": snapshot.datasets,
               "running": snapshot.running, "nonfinite": nonfinite, "columns": columns}
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".snapshot-", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as fh:  # mkstemp files are 0600
                    fh.write(orjson.dumps(doc))
                os.replace(tmp, path)
            except BaseException:
                self._remove(Path(tmp))
                raise
        except OSError as exc:  # a read-only or full disk must not break reading
            _log.warning("mlflow-cc: could not write reader snapshot in %s (%s)", self.directory, exc)
            return None
        return path

    def discard(self, tracking_uri: str, experiment_id: str, user: str) -> None:
        """Remove the snapshot (e.g. after the store refused this user)."""
        self._remove(self.path(self.key(tracking_uri, experiment_id, user)))

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass


#: Least time between the starts of two writes of one reader's snapshot (s). While runs keep
#: arriving, a refresh every few seconds would otherwise rewrite every node every few seconds;
#: a snapshot a little behind costs a reopen only a slightly longer incremental read.
MIN_WRITE_INTERVAL_S = 30.0


class SnapshotWriter:
    """Writes one reader's snapshot in a background thread, so a refresh does not wait for it.

    Writing 50,000 nodes takes about a quarter of a second of CPU; a refresh only hands over
    what it read. One write runs at a time, at most one per ``min_interval_s``; a snapshot
    handed over meanwhile replaces any still waiting (the newest wins, an older one is never
    written after it). :meth:`flush` writes what waits at once; so does the process's exit.
    """

    def __init__(self, store: SnapshotStore, tracking_uri: str, experiment_id: str, user: str, *,
                 min_interval_s: float = MIN_WRITE_INTERVAL_S) -> None:
        self._store, self._key = store, (tracking_uri, experiment_id, user)
        self.min_interval_s = min_interval_s
        self._cond = threading.Condition()
        self._waiting: Snapshot | None = None
        self._busy = self._hurry = False
        self._last_start = -math.inf
        _writers.add(self)

    def submit(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` soon: now, or once ``min_interval_s`` has passed since the last write."""
        with self._cond:
            self._waiting = snapshot
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._run, name="mlflow-cc-snapshot", daemon=True).start()

    def flush(self) -> None:
        """Write what waits now; return once every snapshot submitted so far is written (or failed to be)."""
        with self._cond:
            if self._busy:
                self._hurry = True
                self._cond.notify_all()
                self._cond.wait_for(lambda: not self._busy)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._waiting is None:
                    self._busy = self._hurry = False
                    self._cond.notify_all()
                    return
                while not self._hurry and (left := self._last_start + self.min_interval_s - time.monotonic()) > 0:
                    self._cond.wait(left)
                snapshot, self._waiting = self._waiting, None
                self._last_start = time.monotonic()
            try:
                self._store.save(*self._key, snapshot)
            except Exception:  # noqa: BLE001 - a cache: a failed write must not stop later ones
                _log.exception("mlflow-cc: could not write reader snapshot")


#: Every writer, so that a process exiting writes what waits (the threads are daemons).
_writers: weakref.WeakSet[SnapshotWriter] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for writer in list(_writers):
        writer.flush()


#: The node fields a version-3 file has a list of (the experiment is the file's own).
COLUMNS = tuple(f for f in NODE_FIELDS if f != "experiment_id")
_COLUMN_SET = frozenset(COLUMNS)
_FIELD_SET = frozenset(NODE_FIELDS)
#: Fields whose every value must have this type (the others may also be null).
_TYPES = {"run_id": str, "name": str, "status": str, "start_time": int, "op_params": dict, "inputs": list,
          "metrics": dict, "params": dict, "tags": dict}
#: What build_forest fills in; a node from a snapshot starts with these.
_DERIVED = {"external": False, "parent_id": None, "depth": 0}


def _nodes(columns: dict[str, Any], nonfinite: Iterable[int], experiment_id: str) -> list[ModelNode]:
    """Version 3: nodes from one list per field, checked a column at a time."""
    if not isinstance(columns, dict) or columns.keys() != _COLUMN_SET:
        raise ValueError("snapshot columns are not the node fields")
    count = len(columns["run_id"])
    for name, column in columns.items():
        if not isinstance(column, list) or len(column) != count:
            raise ValueError(f"snapshot column {name!r} is not a list of {count} values")
        kind = _TYPES.get(name)
        if kind is not None and not all(map(isinstance, column, repeat(kind))):
            raise TypeError(f"snapshot column {name!r} has values of the wrong type")
    metrics = columns["metrics"]
    for i in nonfinite:
        metrics[i] = {k: float(v) for k, v in metrics[i].items()}
    names = (*COLUMNS, "experiment_id", *_DERIVED, "children")
    rows = zip(*(columns[f] for f in COLUMNS), repeat(experiment_id), *map(repeat, _DERIVED.values()),
               iter(list, None))  # a new children list per node
    new = object.__new__
    nodes = []
    for row in rows:  # the dataclass's __init__ without its per-field Python: tens of thousands of nodes
        node = new(ModelNode)
        node.__dict__ = dict(zip(names, row))
        nodes.append(node)
    return nodes


def _nodes_v2(records: list[Any], nonfinite: Iterable[int], experiment_id: str) -> list[ModelNode]:
    """Version 2 (one record per node): still read, so an upgrade does not cost a full re-read."""
    for i in nonfinite:
        records[i]["metrics"] = {k: float(v) for k, v in records[i]["metrics"].items()}
    nodes = []
    for rec in records:
        if not isinstance(rec, dict) or rec.keys() != _FIELD_SET:
            raise ValueError("node record has unexpected fields")
        if rec["experiment_id"] != experiment_id:
            raise ValueError("node from another experiment")
        if not all(isinstance(rec[f], kind) for f, kind in _TYPES.items()):
            raise TypeError(f"node record {rec.get('run_id')!r} has fields of the wrong type")
        node = object.__new__(ModelNode)
        node.__dict__.update(rec)
        node.__dict__.update(_DERIVED)
        node.children = []
        nodes.append(node)
    return nodes


def _nonfinite_text(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _strip_userinfo(uri: str) -> str:
    """The URI without ``user:password@`` (credentials never go to disk)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    netloc, slash, tail = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{tail}"
