"""Read side: fetch an experiment's runs from any MLflow store and build the forest.

Works on every tracking URI MLflow's client accepts (sqlite, PostgreSQL, an
``mlflow server`` over HTTP with the usual ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``).
The first :meth:`ExperimentReader.forest` call pages through all runs; later calls
to :meth:`ExperimentReader.refresh` ask the store only for runs started since the
newest one seen and runs that were still running, and update the forest in proportion
to what changed (:mod:`mlflow_cc.read.forest_update`).

Every ``full_every_s`` seconds a refresh also starts a full re-read in a background
thread, to pick up deletions and runs whose writer's clock lagged behind. It reads and
builds outside the reader's lock (at 50,000 runs on sqlite that takes minutes) and only
swaps the result in under it, so refreshes and :meth:`~ExperimentReader.forest` are
served from the current forest meanwhile.

With ``snapshot=True`` (the app does this) what was read is kept on disk
(:mod:`mlflow_cc.read.snapshot`), per store, experiment and user: a reopen in a new process
loads it and asks the store for what changed since (one incremental refresh) instead
of paging through every run again. After a refresh the file is rewritten in a
background thread (:class:`~mlflow_cc.read.snapshot.SnapshotWriter`), off the refresh's path.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.errors import MlflowCCError
from mlflow_cc.metric_info import MetricInfo, parse_experiment_tags
from mlflow_cc.read.forest_update import node_warnings, update_forest
from mlflow_cc.read.lineage import (
    RUNNING_STATUSES,
    Forest,
    LineageWarning,
    ModelNode,
    build_forest,
    copy_node,
)
from mlflow_cc.read.nodes import node_from_fields, node_from_run, run_fields
from mlflow_cc.read.rest_search import (
    RestRunSearch,
    RunFields,
    client_host_creds,
    in_thread,
)
from mlflow_cc.read.snapshot import (
    Snapshot,
    SnapshotStore,
    SnapshotWriter,
    gc_paused,
    node_record,
    user_identity,
)
from mlflow_cc.read.user_client import call_as

_log = logging.getLogger(__name__)

#: Runs per search_runs page.
PAGE_SIZE = 1000
#: MLflow error codes meaning "this user may not read this": a snapshot is discarded.
ACCESS_DENIED_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})
#: (metric metadata, problems reading it): what the experiment's tags say.
Metadata = tuple[dict[str, MetricInfo], list[str]]


@dataclass
class _Read:
    """Runs as a fetch returned them: model nodes, dataset runs, the newest start time, how many."""

    runs: dict[str, ModelNode] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    max_start: int = -1
    count: int = 0


class ExperimentReader:
    """Reads one experiment of one tracking store; thread-safe, incremental."""

    def __init__(self, experiment: str, tracking_uri: str | None = None, *,
                 client: MlflowClient | None = None, full_every_s: float = 300.0,
                 snapshot: bool | SnapshotStore = False, lean: bool = True) -> None:
        """``snapshot``: True for the default :class:`SnapshotStore`, or one to use. ``lean``: page
        through runs with :class:`RestRunSearch` on ``http(s)`` stores (False: ``MlflowClient.search_runs``).
        """
        self.client = client or MlflowClient(tracking_uri)
        creds = client_host_creds(self.client) if lean else None
        #: The lean REST search on an http(s) store (None: the client's search_runs).
        self.rest = (RestRunSearch(creds, call=functools.partial(call_as, self.client))
                     if creds is not None else None)
        self.tracking_uri = self.client.tracking_uri
        self.experiment_id, self.experiment_name = resolve_experiment(self.client, experiment)
        self.full_every_s = full_every_s
        #: Guards the state below. Refreshes hold it; a periodic full re-read only to swap its result in.
        self._lock = threading.Lock()
        self._runs: dict[str, ModelNode] = {}
        self._datasets: dict[str, str] = {}
        self._parent_cache: dict[str, tuple[str, ModelNode | None]] = {}
        #: Declared parents the last full build did not find (id -> why).
        self._missing: dict[str, str] = {}
        self._max_start = -1
        self._last_full = 0.0
        self._full_thread: threading.Thread | None = None
        self._forest: Forest | None = None
        self.metric_info: dict[str, MetricInfo] = {}
        self._metadata_problems: list[str] = []
        #: Runs fetched by the last fetch (full or incremental), for benchmarks and tests.
        self.last_fetch_count = 0
        self._snapshots = SnapshotStore() if snapshot is True else (snapshot or None)
        self._user = user_identity(self.client) if self._snapshots is not None else ""
        self._writer = (SnapshotWriter(self._snapshots, self.tracking_uri, self.experiment_id, self._user)
                        if self._snapshots is not None else None)
        #: True when the first forest came from a snapshot plus an incremental refresh.
        self.opened_from_snapshot = False

    # -- public ------------------------------------------------------------------
    def forest(self) -> Forest:
        """The forest, read the first time (from the snapshot, else every run) and cached after."""
        with self._lock, gc_paused():  # tens of thousands of nodes: no collection passes meanwhile
            if self._forest is None:
                self._first_read()
            assert self._forest is not None
            return self._forest

    def refresh(self) -> Forest:
        """Fetch only what changed (new or still-running runs) and update the forest.

        When a full re-read is due, it is started in the background and this refresh
        goes on incrementally; its result replaces the state when it is done.
        """
        with self._lock, gc_paused():
            if self._forest is None:
                self._first_read()
            else:
                if time.monotonic() - self._last_full > self.full_every_s:
                    self._start_full_reread()
                if self._incremental_fetch():
                    self._save_snapshot()
            assert self._forest is not None
            return self._forest

    @property
    def last_forest(self) -> Forest | None:
        """The forest as last read, without asking the store (None before the first read)."""
        return self._forest

    @property
    def datasets(self) -> dict[str, str]:
        """Dataset name -> id of the dataset run holding its shared previews."""
        return dict(self._datasets)

    def flush_snapshot(self) -> None:
        """Wait until the snapshot writes asked for so far are on disk (benchmarks, tests)."""
        if self._writer is not None:
            self._writer.flush()

    # -- fetching ----------------------------------------------------------------
    def _search(self, filter_string: str = "") -> Iterable[RunFields]:
        if self.rest is not None:
            yield from self.rest.search(self.experiment_id, filter_string)
            return
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                           run_view_type=ViewType.ACTIVE_ONLY,
                                           max_results=PAGE_SIZE, page_token=token)
            for run in page:
                yield run_fields(run)
            token = page.token
            if not token:
                return

    def _read(self, runs: Iterable[RunFields], into: _Read) -> _Read:
        """Add fetched runs to ``into`` (nodes of model runs, names of dataset runs)."""
        for run in runs:
            into.count += 1
            into.max_start = max(into.max_start, run.start_time or 0)
            node = node_from_fields(run)
            if node is None:
                into.datasets[run.tags.get(contract.TAG_DATASET) or run.run_name or run.run_id] = run.run_id
            else:
                into.runs[node.run_id] = node
        return into

    def _first_read(self) -> None:
        """The first forest: the snapshot and what changed since, else every run (nothing to serve meanwhile)."""
        if self._open_from_snapshot():
            return
        read = self._read(self._search(), _Read())
        metadata = self._read_metadata()
        self._parent_cache = {}
        self._install_full(read, metadata, *self._build(read.runs, self._parent_cache, metadata[1], fresh=True))
        self._last_full = time.monotonic()
        self._save_snapshot(wait=True)

    def _start_full_reread(self) -> None:
        if self._full_thread is not None and self._full_thread.is_alive():
            return
        self._last_full = time.monotonic()  # a failed re-read is tried again full_every_s later
        self._full_thread = threading.Thread(target=self._full_reread, name="mlflow-cc-full-read", daemon=True)
        self._full_thread.start()

    def _full_reread(self) -> None:
        """Every run read and linked again outside the lock, then swapped in (deletions show)."""
        try:
            with gc_paused():
                cache: dict[str, tuple[str, ModelNode | None]] = {}
                read = self._read(self._search(), _Read())
                metadata = self._read_metadata()
                built = self._build(read.runs, cache, metadata[1], fresh=True)
            with self._lock, gc_paused():
                self._parent_cache = cache
                self._install_full(read, metadata, *built)
                try:
                    self._incremental_fetch()  # what arrived while every run was being read
                finally:
                    self._save_snapshot()
        except Exception as exc:  # noqa: BLE001 - the forest read so far stays; tried again later
            _log.warning("mlflow-cc: full re-read of experiment %s failed (%s)", self.experiment_id, exc)

    def _install_full(self, read: _Read, metadata: Metadata, forest: Forest, missing: dict[str, str]) -> None:
        self._runs, self._datasets, self._max_start = read.runs, read.datasets, read.max_start
        self.last_fetch_count = read.count
        self.metric_info, self._metadata_problems = metadata
        self._forest, self._missing = forest, missing

    def _incremental_fetch(self) -> bool:
        """Read runs started since the newest seen and runs still running; update the forest.

        True when a run or dataset changed (the snapshot is then worth rewriting). A forest
        with nothing new is kept as it is (views and caches keyed on it stay valid).
        """
        since = self._max_start
        running = [rid for rid, n in self._runs.items() if n.status in RUNNING_STATUSES]
        metadata_read = in_thread(self._read_metadata, "mlflow-cc-metadata")  # overlaps the search
        # Into a separate batch: a fetch cut short changes nothing and is asked again next time.
        fresh = self._read(self._search(f"attributes.start_time >= {since}"), _Read())
        for i in range(0, len(running), 100):
            ids = ", ".join(f"'{rid}'" for rid in running[i:i + 100])
            self._read(self._search(f"attributes.run_id IN ({ids})"), fresh)
        self.last_fetch_count = fresh.count
        changed = {rid: n for rid, n in fresh.runs.items()
                   if (old := self._runs.get(rid)) is None or node_record(old) != node_record(n)}
        datasets_changed = any(self._datasets.get(k) != v for k, v in fresh.datasets.items())
        metadata = metadata_read.result()
        if self._forest is None or changed or metadata != (self.metric_info, self._metadata_problems):
            forest = (update_forest(self._forest, list(changed.values()), self._missing, metadata[1])
                      if self._forest is not None else None)
            if forest is None:  # (no forest yet: the nodes loaded from a snapshot are fresh)
                runs = {**self._runs, **changed}
                forest, self._missing = self._build(runs, self._parent_cache, metadata[1],
                                                    fresh=self._forest is None)
            # Only now, with the forest made: a failure above leaves the state as it was.
            self._forest, (self.metric_info, self._metadata_problems) = forest, metadata
            self._runs.update(changed)
        self._datasets.update(fresh.datasets)
        self._max_start = max(since, fresh.max_start)
        return bool(changed) or datasets_changed

    def _read_metadata(self) -> Metadata:
        """The experiment's metric metadata (its tags); the last one read if they are unreadable now."""
        try:
            return parse_experiment_tags(self.client.get_experiment(self.experiment_id).tags)
        except MlflowException as exc:
            return self.metric_info, [f"experiment metadata unreadable: {exc.message}"]

    # -- snapshot ----------------------------------------------------------------
    def _open_from_snapshot(self) -> bool:
        """Load the snapshot and refresh it from the store; False when there is none to use."""
        if self._snapshots is None:
            return False
        snap = self._snapshots.load(self.tracking_uri, self.experiment_id, self._user)
        if snap is None:
            return False
        self._runs = {n.run_id: n for n in snap.nodes}
        self._datasets, self._parent_cache = dict(snap.datasets), {}
        self._max_start = snap.max_start
        self._last_full = time.monotonic()
        try:
            if self._incremental_fetch():  # the store is always asked; this also proves access
                self._save_snapshot()
        except MlflowException as exc:
            self._runs, self._datasets, self._max_start, self._forest = {}, {}, -1, None
            if exc.error_code in ACCESS_DENIED_CODES:
                self._snapshots.discard(self.tracking_uri, self.experiment_id, self._user)
            raise
        self.opened_from_snapshot = True
        return True

    def _save_snapshot(self, *, wait: bool = False) -> None:
        """Write what was read (in the background unless ``wait``); the nodes are never changed after."""
        if self._writer is not None:
            self._writer.submit(Snapshot(list(self._runs.values()), dict(self._datasets), self._max_start))
            if wait:
                self._writer.flush()

    # -- linking -----------------------------------------------------------------
    def _build(self, runs: dict[str, ModelNode], parent_cache: dict[str, tuple[str, ModelNode | None]],
               metadata_problems: list[str], *, fresh: bool) -> tuple[Forest, dict[str, str]]:
        """The whole forest of ``runs``, with parents outside them looked up; also the parents not found.

        ``fresh``: no forest holds these nodes yet, so they are linked as they are (not copied).
        """
        nodes = dict(runs)
        missing: dict[str, str] = {}
        external_warnings: list[LineageWarning] = []
        pending = [n.declared_parent_id for n in nodes.values()
                   if n.declared_parent_id and n.declared_parent_id not in nodes]
        # Each id is resolved once (it lands in nodes or missing), so this ends.
        while pending:
            pid = pending.pop()
            if pid in nodes or pid in missing:
                continue
            why, ext = self._resolve_parent(pid, parent_cache)
            if ext is None:
                missing[pid] = why
                continue
            nodes[pid] = copy_node(ext)  # cached across builds: never linked itself
            external_warnings.append(LineageWarning(
                "external", pid, f"{ext.name} is in another experiment ({ext.experiment_id}); "
                "shown because models here derive from it"))
            if ext.declared_parent_id and ext.declared_parent_id not in nodes:
                pending.append(ext.declared_parent_id)
        forest = build_forest(nodes.values(), missing, copy=not fresh)
        forest.warnings[:0] = external_warnings
        forest.warnings.extend(node_warnings(nodes.values(), metadata_problems))
        return forest, missing

    def _resolve_parent(self, run_id: str,
                        cache: dict[str, tuple[str, ModelNode | None]]) -> tuple[str, ModelNode | None]:
        """Why a parent is not in this experiment: ("deleted"|"not found", None) or ("external", node)."""
        if run_id in cache:
            return cache[run_id]
        result: tuple[str, ModelNode | None]
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            result = ("not readable by you" if exc.error_code in ACCESS_DENIED_CODES else "not found", None)
        else:
            if run.info.lifecycle_stage == "deleted":
                result = ("deleted", None)
            elif run.info.experiment_id == self.experiment_id:
                result = ("deleted", None)  # active but not returned: deleted meanwhile
            else:
                node = node_from_run(run)
                if node is None:
                    result = ("not a model (a dataset run)", None)
                else:
                    node.external = True
                    result = ("external", node)
        cache[run_id] = result
        return result


def resolve_experiment(client: MlflowClient, experiment: str) -> tuple[str, str]:
    """(id, name) of an experiment given by name or id; a clear error if there is none."""
    exp = None
    try:
        exp = client.get_experiment_by_name(experiment)
    except MlflowException:
        pass
    if exp is None and experiment.isdigit():
        try:
            exp = client.get_experiment(experiment)
        except MlflowException:
            exp = None
    if exp is None or exp.lifecycle_stage == "deleted":
        names = [e.name for e in client.search_experiments(max_results=50)]
        raise MlflowCCError(f"experiment {experiment!r} not found in {client.tracking_uri}; "
                            f"experiments there: {', '.join(names) or 'none'}")
    return exp.experiment_id, exp.name


def list_experiments(client: MlflowClient) -> list[dict[str, Any]]:
    """Active experiments: [{"id", "name"}], most recently created first."""
    exps = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, order_by=["creation_time DESC"])
    return [{"id": e.experiment_id, "name": e.name} for e in exps]
