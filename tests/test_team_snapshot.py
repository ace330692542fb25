"""Reader snapshots: a reopen is load + one incremental refresh; bad or foreign files are never served."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
from mlflow.tracking import MlflowClient

import mlflow_cc as cc
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.snapshot import SNAPSHOT_VERSION, SnapshotStore, node_record
from testing.local_server import MlflowServer
from testing.synthetic import build_study_shape


@pytest.fixture(scope="module")
def study_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (a fresh store costs seconds): experiment "e", 20 models."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('snap') / 'mlflow.db'}"
    build_study_shape("e", tracking_uri=uri)
    return uri


def _records(reader: ExperimentReader) -> dict[str, dict[str, object]]:
    return {n.run_id: {**node_record(n), "parent": n.parent_id, "depth": n.depth} for n in reader.forest()}


def _only_file(store: SnapshotStore) -> Path:
    files = list(store.directory.glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_reopen_loads_snapshot_then_asks_store(study_uri: str, tmp_path: Path, experiment_name: str) -> None:
    uri = study_uri
    store = SnapshotStore(tmp_path / "snapshots")
    built = build_study_shape(experiment_name, tracking_uri=uri)
    first = ExperimentReader(experiment_name, uri, snapshot=store)
    assert len(first.forest()) == 20 and not first.opened_from_snapshot
    path = _only_file(store)
    assert path.stat().st_mode & 0o777 == 0o600

    # A run logged while nobody had the app open shows up on reopen.
    with cc.derive_model(built["q8"][0], "finetune", {"epochs": 1}, name="late", tracking_uri=uri) as late:
        late.log_metric("accuracy", 0.5)
    again = ExperimentReader(experiment_name, uri, snapshot=store)
    forest = again.forest()
    assert again.opened_from_snapshot and again.last_fetch_count <= 3  # newest seen + the new run
    assert len(forest) == 21 and forest[late.run_id].parent_id == built["q8"][0]
    fresh = ExperimentReader(experiment_name, uri)  # no snapshot: the reference
    assert _records(again) == _records(fresh)
    assert again.forest().roots == fresh.forest().roots and again.metric_info == fresh.metric_info


@pytest.mark.parametrize("damage", ["garbage", "truncated", "old_version", "other_experiment", "bad_node"])
def test_unusable_snapshot_is_ignored_and_replaced(damage: str, study_uri: str, tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    ExperimentReader("e", study_uri, snapshot=store).forest()
    path = _only_file(store)
    raw = path.read_text()
    doc = json.loads(raw)
    if damage == "garbage":
        path.write_bytes(b"\x00\xffnot json")
    elif damage == "truncated":
        path.write_text(raw[: len(raw) // 2])
    elif damage == "old_version":
        path.write_text(json.dumps({**doc, "version": 1}))  # a version this code does not read
    elif damage == "other_experiment":
        path.write_text(json.dumps({**doc, "experiment_id": "999"}))
    else:
        doc["columns"]["metrics"][0] = ["not", "a", "dict"]
        path.write_text(json.dumps(doc))
    reader = ExperimentReader("e", study_uri, snapshot=store)
    assert len(reader.forest()) == 20
    assert not reader.opened_from_snapshot and reader.last_fetch_count == 20  # a full fetch
    assert json.loads(_only_file(store).read_text())["version"] == SNAPSHOT_VERSION  # rewritten whole


def test_a_version_2_snapshot_is_still_read(study_uri: str, tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    first = ExperimentReader("e", study_uri, snapshot=store)
    first.forest()
    path = _only_file(store)
    doc = json.loads(path.read_text())
    assert doc["version"] == SNAPSHOT_VERSION == 3
    # What version 2 wrote: one record per node, the same key (so the same file name).
    nodes = list(first.forest())
    records = [{**node_record(n), "metrics": {"acc": "NaN"} if n is nodes[-1] else n.metrics} for n in nodes]
    v2 = {k: v for k, v in doc.items() if k != "columns"}
    path.write_text(json.dumps({**v2, "version": 2, "nonfinite": [len(records) - 1], "nodes": records}))
    reader = ExperimentReader("e", study_uri, snapshot=store)
    forest = reader.forest()
    assert reader.opened_from_snapshot and reader.last_fetch_count == 1  # only the newest run seen
    assert math.isnan(forest[nodes[-1].run_id].metrics["acc"])  # the file's value (not refetched): it was read
    assert [n.run_id for n in forest] == [r["run_id"] for r in records]


def test_snapshots_are_per_user_and_hold_no_credentials(study_uri: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-secret-pw")
    ExperimentReader("e", study_uri, snapshot=store).forest()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    bob = ExperimentReader("e", study_uri, snapshot=store)
    bob.forest()
    assert not bob.opened_from_snapshot  # alice's snapshot is not bob's
    files = list(store.directory.glob("*.json"))
    assert len(files) == 2
    for f in files:
        text = f.read_text()
        assert "alice" not in text and "bob" not in text and "secret" not in text
    assert store.key("http://u:pw@host:5000", "1", "") == store.key("http://host:5000", "1", "")


def test_permission_error_on_reopen_discards_snapshot(study_uri: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    ExperimentReader("e", study_uri, snapshot=store).forest()
    reader = ExperimentReader("e", study_uri, snapshot=store)

    def denied(*args: object, **kwargs: object) -> None:
        raise MlflowException("Permission denied", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(reader.client, "search_runs", denied)
    with pytest.raises(MlflowException, match="Permission denied"):
        reader.forest()
    assert list(store.directory.glob("*.json")) == []  # discarded, nothing served
    assert reader._forest is None and reader._runs == {}


def test_snapshot_over_http_reopens_with_one_refresh(postgres_server: MlflowServer, tmp_path: Path,
                                                     experiment_name: str) -> None:
    client = MlflowClient(postgres_server.url)
    exp = client.create_experiment(experiment_name)
    from testing.synthetic import build_random_forest

    build_random_forest(client, exp, 60, seed=3)
    store = SnapshotStore(tmp_path / "snapshots")
    assert len(ExperimentReader(exp, postgres_server.url, snapshot=store).forest()) == 60
    reopened = ExperimentReader(exp, postgres_server.url, snapshot=store)
    assert len(reopened.forest()) == 60 and reopened.opened_from_snapshot
    assert reopened.last_fetch_count == 1  # only the newest run seen, re-read to catch ties
    late = build_random_forest(client, exp, 1, roots=1, seed=9)[0]
    again = ExperimentReader(exp, postgres_server.url, snapshot=store)
    assert again.forest()[late].name == "model-0" and again.opened_from_snapshot
    assert _records(again) == _records(ExperimentReader(exp, postgres_server.url))
