"""Refreshes update the forest in proportion to what changed; a full re-read and snapshot writes hold no one up."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow.tracking import MlflowClient
from waiting import TIMEOUT_S, wait_until

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.read.lineage import Forest, ModelNode
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.rest_search import RunFields
from mlflow_cc.read.snapshot import Snapshot, SnapshotStore, SnapshotWriter, node_record
from testing.synthetic import build_random_forest


def _structure(forest: Forest) -> tuple[object, ...]:
    """Everything a view sees: node order, fields, links, depths, roots, warnings in order."""
    nodes = [(rid, node_record(n), n.parent_id, list(n.children), n.depth, n.external)
             for rid, n in forest.nodes.items()]
    return nodes, list(forest.roots), [w.to_dict() for w in forest.warnings]


def _unordered(forest: Forest) -> tuple[object, ...]:
    nodes, roots, warnings = _structure(forest)
    return sorted(nodes, key=repr), roots, sorted(warnings, key=repr)


def _run(client: MlflowClient, exp: str, name: str, tags: dict[str, str] | None = None,
         status: str | None = "FINISHED") -> str:
    run = client.create_run(exp, run_name=name, tags=tags or {})
    if status:
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _same_as_full_builds(reader: ExperimentReader, forest: Forest, tmp: Path, store: SnapshotStore) -> None:
    """``forest`` equals a full build of the same runs in the same order (a reopen from the
    snapshot just written), and a fresh full read of the store up to node order."""
    reader.flush_snapshot()
    reopened = ExperimentReader(reader.experiment_id, reader.tracking_uri, snapshot=store)
    assert _structure(reopened.forest()) == _structure(forest) and reopened.opened_from_snapshot
    assert _unordered(ExperimentReader(reader.experiment_id, reader.tracking_uri).forest()) == _unordered(forest)


def test_a_refresh_updates_the_forest_like_a_full_build(sqlite_uri: str, tmp_path: Path) -> None:
    client = MlflowClient()
    exp = client.create_experiment("grow")
    with cc.log_base_model("outside", experiment="elsewhere") as outside:
        pass
    base = _run(client, exp, "base")
    a = _run(client, exp, "a", {contract.TAG_PARENT: base})
    _run(client, exp, "orphan", {contract.TAG_PARENT: "f" * 32})
    uses_outside = _run(client, exp, "uses-outside", {contract.TAG_PARENT: outside.run_id})
    training = _run(client, exp, "training", {contract.TAG_PARENT: base}, status=None)
    moving = _run(client, exp, "moving", status=None)
    store = SnapshotStore(tmp_path / "snapshots")
    reader = ExperimentReader("grow", snapshot=store)
    first = reader.forest()
    before = _structure(first)

    # New runs under runs already read (and under each other), a new root, bad tags; a run finishing failed.
    n1 = _run(client, exp, "n1", {contract.TAG_PARENT: a})
    n2 = _run(client, exp, "n2", {contract.TAG_PARENT: n1})
    _run(client, exp, "new-root")
    bad = _run(client, exp, "bad", {contract.TAG_PARENT: base, contract.TAG_OPERATION_PARAMS: "{nope"})
    client.set_tag(training, contract.TAG_FAILURE, "OOM")
    client.set_terminated(training, "FAILED")
    second = reader.refresh()
    assert _structure(first) == before  # the previous forest is left as it was (others may be walking it)
    assert second.nodes[uses_outside] is first.nodes[uses_outside]  # untouched nodes are not rebuilt
    assert second[n2].parent_id == n1 and second[n2].depth == 3 and n1 in second[a].children
    kinds = {(w.kind, w.run_id) for w in second.warnings}
    assert {("failed", training), ("bad_tag", bad), ("external", outside.run_id)} <= kinds
    _same_as_full_builds(reader, second, tmp_path, store)

    # Changes that relink: a run still running names a parent now; two new runs name each other.
    client.set_tag(moving, contract.TAG_PARENT, n2)
    c1 = _run(client, exp, "c1")
    c2 = _run(client, exp, "c2", {contract.TAG_PARENT: c1})
    client.set_tag(c1, contract.TAG_PARENT, c2)
    third = reader.refresh()
    assert third[moving].parent_id == n2 and third[moving].depth == 4
    assert {w.run_id for w in third.warnings if w.kind == "cycle"} == {c1}
    _same_as_full_builds(reader, third, tmp_path, store)


class _PausingReader(ExperimentReader):
    """A reader whose full re-reads wait, once started, until the test releases them (real store)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.pause = False
        self.started, self.release = threading.Event(), threading.Event()

    def _search(self, filter_string: str = "") -> Iterable[RunFields]:
        if not filter_string and self.pause:  # every run: a full read
            self.started.set()
            assert self.release.wait(TIMEOUT_S), "never released"
        yield from super()._search(filter_string)


def test_a_full_reread_in_progress_does_not_hold_up_refreshes(sqlite_uri: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("busy")
    ids = build_random_forest(client, exp, 12, roots=12, seed=1)  # 12 base models: deleting one orphans none
    reader = _PausingReader(exp, full_every_s=0)  # every refresh is due a full re-read
    assert len(reader.forest()) == 12
    reader.pause = True
    client.delete_run(ids[0])  # only a full re-read notices a deletion
    with ThreadPoolExecutor(2) as pool:
        pool.submit(reader.refresh).result(TIMEOUT_S)  # starts the full re-read, which now waits
        assert reader.started.wait(TIMEOUT_S)
        new = build_random_forest(client, exp, 2, roots=1, seed=2)
        during = pool.submit(reader.refresh).result(TIMEOUT_S)  # served while the full re-read is held
        assert set(new) <= set(during.nodes) and ids[0] in during.nodes
        assert pool.submit(reader.forest).result(TIMEOUT_S) is during
        assert not reader.release.is_set()  # still in progress: both calls were served meanwhile
    reader.pause = False
    reader.release.set()
    after = wait_until(lambda: (f := reader.last_forest) is not None and ids[0] not in f.nodes and f)
    assert set(after.nodes) == set(ids[1:]) | set(new)  # swapped in, with what arrived meanwhile


class _CountingStore(SnapshotStore):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.saved: list[int] = []

    def save(self, tracking_uri: str, experiment_id: str, user: str, snapshot: Snapshot) -> Path | None:
        self.saved.append(snapshot.max_start)
        return super().save(tracking_uri, experiment_id, user, snapshot)


def test_snapshot_writes_are_spaced_and_the_newest_wins(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path)
    writer = SnapshotWriter(store, "http://h", "1", "", min_interval_s=3600)
    node = ModelNode("a", "a", "1")
    writer.submit(Snapshot([node], {}, 1))
    wait_until(lambda: store.saved == [1])  # the first write is not held back
    writer.submit(Snapshot([node], {}, 2))  # within the interval: waits...
    writer.submit(Snapshot([node], {}, 3))  # ...and is replaced by a newer one
    writer.flush()  # writes what waits now
    assert store.saved == [1, 3] and store.load("http://h", "1", "").max_start == 3
