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
* files are JSON (no pickle; written and parsed with ``orjson``: a 50,000-run snapshot
  loads in a fraction of a second), schema-versioned; non-finite metric values, which
  JSON cannot hold, are written as the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``
  and listed by node index under ``nonfinite``; a corrupt, truncated or older-version
  file is ignored (and removed), never trusted;
* writes are atomic (temp file + rename in the same folder), so gunicorn workers
  sharing the folder never read a half-written file; files are private to the OS user
  (mode 0600 in a 0700 folder).

Folder: ``$MLFLOW_CC_CACHE_DIR/snapshots`` (default ``~/.cache/mlflow-cc/snapshots``),
the cache that every app worker on a machine shares.
"""

from __future__ import annotations

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from mlflow.tracking import MlflowClient

from mlflow_cc.artifacts.files import cache_dir
from mlflow_cc.read.lineage import ModelNode

_log = logging.getLogger(__name__)

#: Bumped whenever the file layout or the meaning of a node field changes.
SNAPSHOT_VERSION = 2
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
        raw = json.dumps([SNAPSHOT_VERSION, _strip_userinfo(tracking_uri), str(experiment_id), user])
        return hashlib.sha256(raw.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, tracking_uri: str, experiment_id: str, user: str) -> Snapshot | None:
        """The snapshot for this key, or None when absent, corrupt, foreign or of another version."""
        path = self.path(self.key(tracking_uri, experiment_id, user))
        try:
            with gc_paused():  # 50,000 nodes are ~1M new containers: no collection passes meanwhile
                doc = orjson.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"not a version-{SNAPSHOT_VERSION} snapshot")
            expected = {"tracking_uri": _strip_userinfo(tracking_uri), "experiment_id": str(experiment_id),
                        "user": user}
            if any(doc.get(k) != v for k, v in expected.items()):
                raise ValueError("snapshot belongs to another store, experiment or user")
            records = doc["nodes"]
            for i in doc.get("nonfinite", ()):
                records[i]["metrics"] = {k: float(v) for k, v in records[i]["metrics"].items()}
            with gc_paused():
                nodes = [_node(rec, str(experiment_id)) for rec in records]
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
        records = [node_record(n) for n in snapshot.nodes]
        # A sum is finite when every term is (an overflow only sends a node down the exact path).
        nonfinite = [i for i, rec in enumerate(records) if not math.isfinite(sum(rec["metrics"].values()))]
        for i in nonfinite:
            records[i]["metrics"] = {k: v if math.isfinite(v) else _nonfinite_text(v)
                                     for k, v in records[i]["metrics"].items()}
        doc = {"format": FORMAT, "version": SNAPSHOT_VERSION, "tracking_uri": _strip_userinfo(tracking_uri),
               "experiment_id": str(experiment_id), "user": user, "saved_at": snapshot.saved_at,
               "max_start": snapshot.max_start, "datasets": snapshot.datasets,
               "running": snapshot.running, "nonfinite": nonfinite, "nodes": records}
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


class SnapshotWriter:
    """Writes one reader's snapshot in a background thread, so a refresh does not wait for it.

    Writing 50,000 nodes takes a good part of a second; a refresh only hands over what it
    read. One write runs at a time; a snapshot handed over meanwhile replaces any still
    waiting (the newest wins, older ones are never written after it). The thread is not a
    daemon: a process that exits finishes the write in progress first.
    """

    def __init__(self, store: SnapshotStore, tracking_uri: str, experiment_id: str, user: str) -> None:
        self._store, self._key = store, (tracking_uri, experiment_id, user)
        self._cond = threading.Condition()
        self._waiting: Snapshot | None = None
        self._busy = False

    def submit(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` soon (after the write in progress, if any)."""
        with self._cond:
            self._waiting = snapshot
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._run, name="mlflow-cc-snapshot").start()

    def flush(self) -> None:
        """Return once every snapshot submitted so far is written (or failed to be)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)

    def _run(self) -> None:
        while True:
            with self._cond:
                snapshot, self._waiting = self._waiting, None
                if snapshot is None:
                    self._busy = False
                    self._cond.notify_all()
                    return
            try:
                self._store.save(*self._key, snapshot)
            except Exception:  # noqa: BLE001 - a cache: a failed write must not stop later ones
                _log.exception("mlflow-cc: could not write reader snapshot")


_FIELD_SET = frozenset(NODE_FIELDS)
_KEYS, _VALUES = ("run_id", "name", "status", "start_time", "op_params", "inputs", "metrics", "params", "tags"), \
    (str, str, str, int, dict, list, dict, dict, dict)
#: What build_forest fills in; a node from a snapshot starts with these.
_DERIVED = {"external": False, "parent_id": None, "depth": 0}


def _node(rec: dict[str, Any], experiment_id: str) -> ModelNode:
    if not isinstance(rec, dict) or rec.keys() != _FIELD_SET:
        raise ValueError("node record has unexpected fields")
    if rec["experiment_id"] != experiment_id:
        raise ValueError("node from another experiment")
    if not all(map(isinstance, map(rec.__getitem__, _KEYS), _VALUES)):
        raise TypeError(f"node record {rec.get('run_id')!r} has fields of the wrong type")
    # The dataclass's __init__ without its per-field Python: a reopen builds tens of thousands.
    node = object.__new__(ModelNode)
    node.__dict__.update(rec)
    node.__dict__.update(_DERIVED)
    node.children = []
    return node


def _nonfinite_text(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _strip_userinfo(uri: str) -> str:
    """The URI without ``user:password@`` (credentials never go to disk)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    netloc, slash, tail = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{tail}"
