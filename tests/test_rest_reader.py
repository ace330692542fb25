"""The lean REST read path gives the same forest as MlflowClient.search_runs, on a real mlflow server."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.rest_search import RestRunSearch, host_creds, parse_run
from mlflow_cc.read.snapshot import node_record
from mlflow_cc.read.store_health import is_unreachable
from testing.local_server import free_port, start_mlflow_server
from testing.synthetic import build_random_forest


def _awkward_experiment(client: MlflowClient, name: str) -> str:
    """Runs of every kind the forest must handle, written through the server."""
    exp = client.create_experiment(name)
    other = client.create_experiment(name + "-other")
    ids = build_random_forest(client, exp, 40, seed=3)
    external = client.create_run(other, run_name="external-base",
                                 tags={contract.TAG_KIND: contract.KIND_MODEL}).info.run_id
    client.set_terminated(external)

    def run(name: str, tags: dict[str, str], status: str | None = "FINISHED") -> str:
        rid = client.create_run(exp, run_name=name, tags={contract.TAG_KIND: contract.KIND_MODEL, **tags}).info.run_id
        if status:
            client.set_terminated(rid, status)
        return rid

    run("in-progress", {contract.TAG_PARENT: ids[0], contract.TAG_OPERATION: "finetune"}, status=None)
    run("failed", {contract.TAG_PARENT: ids[1], contract.TAG_FAILURE: "OOM"}, status="FAILED")
    run("bad-params", {contract.TAG_PARENT: ids[2], contract.TAG_OPERATION: "prune",
                       contract.TAG_OPERATION_PARAMS: "{not json"})
    run("bad-inputs", {contract.TAG_PARENT: ids[2], contract.TAG_INPUTS: "[{\"role\": 1}]"})
    run("bad-step", {contract.TAG_STEP: "two"})
    run("missing-parent", {contract.TAG_PARENT: uuid.uuid4().hex})
    run("from-other-experiment", {contract.TAG_PARENT: external})
    hand = run("hand-written", {}, status=None)
    client.log_param(hand, "op.name", "quantize")
    client.log_param(hand, "op.bits", "8")
    client.log_batch(hand, metrics=[Metric("loss", float("nan"), 0, 0), Metric("acc", 0.5, 0, 0),
                                    Metric("acc", 0.75, 1, 1)], tags=[RunTag("note", "<b>x</b>")])
    deleted_parent = run("deleted-parent", {})
    run("child-of-deleted", {contract.TAG_PARENT: deleted_parent})
    client.delete_run(deleted_parent)
    client.delete_run(ids[-1])  # a deleted leaf: gone from both reads
    run("dataset", {contract.TAG_KIND: contract.KIND_DATASET, contract.TAG_DATASET: "digits"})
    return exp


def _state(reader: ExperimentReader) -> tuple[object, ...]:
    forest = reader.forest()
    nodes = {rid: (node_record(n), n.parent_id, sorted(n.children), n.depth, n.external)
             for rid, n in forest.nodes.items()}
    warnings = sorted((w.kind, w.run_id or "", w.message) for w in forest.warnings)
    return nodes, warnings, reader.datasets


def _nan_free(value: object) -> object:
    """NaN != NaN: compare metric values through their repr."""
    if isinstance(value, dict):
        return {k: _nan_free(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_nan_free(v) for v in value)
    return repr(value) if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize("server", ["mlflow_server", "postgres_server"])
def test_lean_read_equals_client_read(server: str, request: pytest.FixtureRequest, experiment_name: str) -> None:
    url = request.getfixturevalue(server).url
    client = MlflowClient(url)
    exp = _awkward_experiment(client, experiment_name)
    lean = ExperimentReader(exp, url)
    plain = ExperimentReader(exp, url, lean=False)
    assert lean.rest is not None and plain.rest is None
    lean_state, plain_state = _state(lean), _state(plain)
    assert _nan_free(lean_state) == _nan_free(plain_state)
    nodes, warnings, datasets = lean_state
    by_name = {rec["name"]: (rec, parent) for rec, parent, *_ in nodes.values()}
    assert by_name["in-progress"][0]["status"] == "RUNNING" and by_name["in-progress"][0]["end_time"] is None
    assert by_name["hand-written"][0]["operation"] == "quantize"
    assert by_name["hand-written"][0]["op_params"] == {"bits": 8}
    assert by_name["hand-written"][0]["metrics"]["acc"] == 0.75
    assert math.isnan(by_name["hand-written"][0]["metrics"]["loss"])
    assert "deleted-parent" not in by_name and len(nodes) == 40 - 1 + 9 + 1  # + the external parent
    assert {k for k, *_ in warnings} >= {"bad_tag", "orphan", "external"}
    assert datasets == {"digits": next(iter(datasets.values()))}

    # Incremental refresh through the lean path: new runs and finished running ones, like the client path.
    running = next(rid for rid, (rec, *_) in nodes.items() if rec["name"] == "in-progress")
    client.set_terminated(running, RunStatus.to_string(RunStatus.FINISHED))
    build_random_forest(client, exp, 3, roots=1, seed=9)
    lean.refresh()
    plain.refresh()
    assert lean.last_fetch_count == plain.last_fetch_count >= 4
    assert _nan_free(_state(lean)) == _nan_free(_state(plain))
    assert lean.forest()[running].status == "FINISHED"


def test_lean_paging_crosses_pages(mlflow_server, experiment_name: str) -> None:
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment(experiment_name)
    ids = build_random_forest(client, exp, 25, seed=5)
    search = RestRunSearch(host_creds(mlflow_server.url), page_size=7, first_page=2)
    got = [r.run_id for r in search.search(exp)]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))
    newest = max(r.start_time for r in search.search(exp))
    assert [r.start_time for r in search.search(exp, f"attributes.start_time >= {newest}")] == [newest]


def test_parse_run_matches_mlflow_defaults() -> None:
    run = parse_run({"info": {"run_uuid": "abc", "experiment_id": "3", "start_time": "17", "end_time": 0},
                     "data": {"metrics": [{"key": "m", "value": "NaN"}, {"key": "x", "value": 1}],
                              "tags": [{"key": "t", "value": "v"}]}})
    assert (run.run_id, run.experiment_id, run.start_time, run.end_time, run.status) == ("abc", "3", 17, None,
                                                                                          "RUNNING")
    assert math.isnan(run.metrics["m"]) and run.metrics["x"] == 1.0 and run.params == {} and run.tags == {"t": "v"}


def test_lean_errors_are_mlflow_errors(mlflow_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    search = RestRunSearch(host_creds(mlflow_server.url))
    with pytest.raises(MlflowException) as refused:
        list(search.search("0", "attributes.nonsense >= 1"))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and not is_unreachable(refused.value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    down = RestRunSearch(host_creds(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(MlflowException) as unreachable:
        list(down.search("0"))
    assert is_unreachable(unreachable.value)


def test_reader_over_lean_path_reports_a_store_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = start_mlflow_server(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "srv")
    try:
        client = MlflowClient(server.url)
        exp = client.create_experiment("gone")
        build_random_forest(client, exp, 5, seed=1)
        reader = ExperimentReader(exp, server.url)
        assert reader.rest is not None and len(reader.forest()) == 5
    finally:
        server.stop(grace_s=3)
    with pytest.raises(MlflowException) as exc:
        reader.refresh()
    assert is_unreachable(exc.value)
    assert len(reader.last_forest) == 5  # what was read is kept


def test_snapshot_keeps_nonfinite_metrics_and_refuses_bad_nodes(tmp_path: Path) -> None:
    from mlflow_cc.read.lineage import ModelNode
    from mlflow_cc.read.snapshot import Snapshot, SnapshotStore

    store = SnapshotStore(tmp_path)
    nodes = [ModelNode("a", "a", "1", metrics={"x": float("nan"), "y": 1.0}),
             ModelNode("b", "b", "1", metrics={"x": 1e308, "y": 1e308}),
             ModelNode("c", "c", "1", metrics={"z": -float("inf"), "w": float("inf")}, tags={"k": "v"})]
    path = store.save("http://h", "1", "", Snapshot(nodes, {}, 3))
    loaded = store.load("http://h", "1", "")
    assert [_nan_free(n.metrics) for n in loaded.nodes] == [_nan_free(n.metrics) for n in nodes]
    assert loaded.nodes[2].tags == {"k": "v"} and loaded.nodes[2].children == [] and not loaded.nodes[2].external
    assert loaded.nodes[0].children is not loaded.nodes[1].children  # each node its own list
    raw = path.read_bytes()
    assert raw.count(b'"a","b","c"') == 2  # the run_id and name columns
    path.write_bytes(raw.replace(b'"a","b","c"', b'"a",7,"c"'))
    assert store.load("http://h", "1", "") is None and not path.exists()  # refused, removed
