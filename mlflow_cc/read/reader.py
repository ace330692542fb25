"""Read side: fetch an experiment's runs from any MLflow store and build the forest.

Works on every tracking URI MLflow's client accepts (sqlite, PostgreSQL, an
``mlflow server`` over HTTP with the usual ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``).
The first :meth:`ExperimentReader.forest` call pages through all runs; later calls
to :meth:`ExperimentReader.refresh` ask the store only for runs started since the
newest one seen and runs that were still running. Every ``full_every_s`` seconds a
refresh is a full fetch instead, to pick up deletions and runs whose writer's
clock lagged behind.

With ``snapshot=True`` (the app does this) what was read is kept on disk
(:mod:`mlflow_cc.read.snapshot`), per store, experiment and user: a reopen in a new process
loads it and asks the store for what changed since (one incremental refresh) instead
of paging through every run again.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.errors import MlflowCCError
from mlflow_cc.metric_info import MetricInfo, parse_experiment_tags
from mlflow_cc.read.lineage import Forest, LineageWarning, ModelNode, build_forest
from mlflow_cc.read.rest_search import RestRunSearch, RunFields, client_host_creds
from mlflow_cc.read.snapshot import (
    Snapshot,
    SnapshotStore,
    gc_paused,
    node_record,
    user_identity,
)
from mlflow_cc.read.user_client import call_as

#: Runs per search_runs page.
PAGE_SIZE = 1000
#: MLflow error codes meaning "this user may not read this": a snapshot is discarded.
ACCESS_DENIED_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})


def node_from_run(run: Run) -> ModelNode | None:
    """Turn an MLflow run into a model node; ``None`` for a dataset run."""
    return node_from_fields(run_fields(run))


def run_fields(run: Run) -> RunFields:
    """The fields of an MLflow ``Run`` the forest needs (what the lean REST path parses directly)."""
    info = run.info
    return RunFields(run_id=info.run_id, run_name=info.run_name or "", experiment_id=info.experiment_id,
                     status=info.status, start_time=info.start_time or 0, end_time=info.end_time,
                     lifecycle_stage=info.lifecycle_stage, tags=dict(run.data.tags),
                     params=dict(run.data.params), metrics=dict(run.data.metrics))


def node_from_fields(run: RunFields) -> ModelNode | None:
    """Turn one run's fields into a model node; ``None`` for a dataset run."""
    tags = run.tags
    if tags.get(contract.TAG_KIND) == contract.KIND_DATASET:
        return None
    problems: list[str] = []
    op_params: dict[str, Any] = {}
    raw_params = tags.get(contract.TAG_OPERATION_PARAMS)
    params = run.params
    if raw_params is not None:
        try:
            parsed = json.loads(raw_params)
            if not isinstance(parsed, dict):
                raise TypeError("not a JSON object")
            op_params = parsed
        except (ValueError, TypeError) as exc:
            problems.append(f"operation parameters tag is unreadable ({exc})")
    if not op_params:  # written by hand as op.<name> params only
        op_params = {k[len(contract.PARAM_OPERATION_PREFIX):]: _typed(v) for k, v in params.items()
                     if k.startswith(contract.PARAM_OPERATION_PREFIX) and k != "op.name"}
    inputs: list[dict[str, str]] = []
    if contract.TAG_INPUTS in tags:
        try:
            parsed_inputs = json.loads(tags[contract.TAG_INPUTS])
            inputs = [{"run_id": str(i["run_id"]), "role": str(i.get("role", "input"))}
                      for i in parsed_inputs]
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"extra inputs tag is unreadable ({exc})")
    step: int | None = None
    if contract.TAG_STEP in tags:
        try:
            step = int(tags[contract.TAG_STEP])
        except ValueError:
            problems.append(f"step tag {tags[contract.TAG_STEP]!r} is not an integer")
    node = ModelNode(
        run_id=run.run_id,
        name=run.run_name or tags.get(contract.TAG_RUN_NAME) or run.run_id[:8],
        experiment_id=run.experiment_id,
        declared_parent_id=tags.get(contract.TAG_PARENT) or None,
        operation=tags.get(contract.TAG_OPERATION) or params.get("op.name") or None,
        op_params=op_params,
        step=step,
        inputs=inputs,
        metrics=run.metrics,
        params={k: v for k, v in params.items() if not k.startswith(contract.PARAM_OPERATION_PREFIX)},
        tags=dict(tags),
        status=run.status,
        start_time=run.start_time or 0,
        end_time=run.end_time,
        failure_reason=tags.get(contract.TAG_FAILURE),
    )
    if problems:
        node.tags["_problems"] = "; ".join(problems)
    return node


def _typed(value: str) -> Any:
    """Best-effort typing of a string param (``"0.5"`` -> 0.5) for sorting siblings."""
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)


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
        self._lock = threading.Lock()
        self._runs: dict[str, ModelNode] = {}
        self._datasets: dict[str, str] = {}
        self._parent_cache: dict[str, tuple[str, ModelNode | None]] = {}
        self._max_start = -1
        self._last_full = 0.0
        self._forest: Forest | None = None
        self.metric_info: dict[str, MetricInfo] = {}
        self._metadata_problems: list[str] = []
        #: Runs fetched by the last fetch (full or incremental), for benchmarks and tests.
        self.last_fetch_count = 0
        self._snapshots = SnapshotStore() if snapshot is True else (snapshot or None)
        self._user = user_identity(self.client) if self._snapshots is not None else ""
        self._changed = False
        #: True when the first forest came from a snapshot plus an incremental refresh.
        self.opened_from_snapshot = False

    # -- public ------------------------------------------------------------------
    def forest(self) -> Forest:
        """The forest, fetched in full the first time and cached after."""
        with self._lock, gc_paused():  # tens of thousands of nodes: no collection passes meanwhile
            if self._forest is None and not self._open_from_snapshot():
                self._full_fetch()
            assert self._forest is not None
            return self._forest

    def refresh(self) -> Forest:
        """Fetch only what changed (new or still-running runs) and rebuild the forest."""
        with self._lock, gc_paused():
            if self._forest is None or time.monotonic() - self._last_full > self.full_every_s:
                self._full_fetch()
            else:
                self._incremental_fetch()
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

    def _full_fetch(self) -> None:
        self._runs, self._datasets, self._parent_cache = {}, {}, {}
        self._max_start = -1
        self.last_fetch_count = self._ingest(self._search())
        self._last_full = time.monotonic()
        self._rebuild()
        self._changed = True
        self._save_snapshot()

    def _incremental_fetch(self) -> None:
        self._changed = False
        since = self._max_start
        running = [rid for rid, n in self._runs.items() if n.is_running and not n.external]
        try:
            count = self._ingest(self._search(f"attributes.start_time >= {since}"))
            for i in range(0, len(running), 100):
                ids = ", ".join(f"'{rid}'" for rid in running[i:i + 100])
                count += self._ingest(self._search(f"attributes.run_id IN ({ids})"))
        except BaseException:
            # Pages come newest first: a fetch cut short must not skip the older new runs next time.
            self._max_start = since
            raise
        self.last_fetch_count = count
        if not self._changed and self._forest is not None and not self._metadata_changed():
            return  # nothing new: keep the forest object (views and caches keyed on it stay valid)
        self._rebuild()
        self._save_snapshot()

    def _metadata_changed(self) -> bool:
        """Whether the experiment's metric metadata (its tags) differ from what the forest was built with."""
        try:
            exp = self.client.get_experiment(self.experiment_id)
        except MlflowException:
            return True  # _rebuild reports it
        return parse_experiment_tags(exp.tags) != (self.metric_info, self._metadata_problems)

    def _ingest(self, runs: Iterable[RunFields]) -> int:
        count = 0
        for run in runs:
            count += 1
            start = run.start_time or 0
            self._max_start = max(self._max_start, start)
            node = node_from_fields(run)
            if node is None:
                name = run.tags.get(contract.TAG_DATASET) or run.run_name or run.run_id
                self._changed |= self._datasets.get(name) != run.run_id
                self._datasets[name] = run.run_id
            else:
                old = self._runs.get(node.run_id)
                self._changed |= old is None or node_record(old) != node_record(node)
                self._runs[node.run_id] = node
        return count

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
            self._incremental_fetch()  # the store is always asked; this also proves access
        except MlflowException as exc:
            self._runs, self._datasets, self._max_start, self._forest = {}, {}, -1, None
            if exc.error_code in ACCESS_DENIED_CODES:
                self._snapshots.discard(self.tracking_uri, self.experiment_id, self._user)
            raise
        self.opened_from_snapshot = True
        return True

    def _save_snapshot(self) -> None:
        if self._snapshots is None or not self._changed:
            return
        self._snapshots.save(self.tracking_uri, self.experiment_id, self._user,
                             Snapshot(list(self._runs.values()), dict(self._datasets), self._max_start))
        self._changed = False

    def _rebuild(self) -> None:
        try:
            exp = self.client.get_experiment(self.experiment_id)
            self.metric_info, self._metadata_problems = parse_experiment_tags(exp.tags)
        except MlflowException as exc:
            self._metadata_problems = [f"experiment metadata unreadable: {exc.message}"]
        nodes = dict(self._runs)
        missing: dict[str, str] = {}
        external_warnings: list[LineageWarning] = []
        pending = [n.declared_parent_id for n in nodes.values()
                   if n.declared_parent_id and n.declared_parent_id not in nodes]
        # Each id is resolved once (it lands in nodes or missing), so this ends.
        while pending:
            pid = pending.pop()
            if pid in nodes or pid in missing:
                continue
            why, ext = self._resolve_parent(pid)
            if ext is None:
                missing[pid] = why
                continue
            nodes[pid] = ext
            external_warnings.append(LineageWarning(
                "external", pid, f"{ext.name} is in another experiment ({ext.experiment_id}); "
                "shown because models here derive from it"))
            if ext.declared_parent_id and ext.declared_parent_id not in nodes:
                pending.append(ext.declared_parent_id)
        forest = build_forest(nodes.values(), missing)
        forest.warnings[:0] = external_warnings
        forest.warnings.extend(LineageWarning("metadata", None, p) for p in self._metadata_problems)
        forest.warnings.extend(LineageWarning("bad_tag", n.run_id, f"{n.name}: {n.tags['_problems']}")
                               for n in nodes.values() if "_problems" in n.tags)
        self._forest = forest

    def _resolve_parent(self, run_id: str) -> tuple[str, ModelNode | None]:
        """Why a parent is not in this experiment: ("deleted"|"not found", None) or ("external", node)."""
        if run_id in self._parent_cache:
            return self._parent_cache[run_id]
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
        self._parent_cache[run_id] = result
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
