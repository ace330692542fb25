"""The reader rebuilds the provenance forest from each real store, and survives bad lineage."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.read.reader import ExperimentReader
from testing.synthetic import STUDY_SPECS, build_study_shape


def test_study_shape_rebuilt_exactly(store_uri: str, experiment_name: str) -> None:
    built = build_study_shape(experiment_name)
    assert len(built) == 20
    forest = ExperimentReader(experiment_name).forest()
    assert len(forest) == 20 and forest.warnings == []
    base_id = built["base"][0]
    assert forest.roots == [base_id]
    for key, (run_id, spec, metrics) in built.items():
        node = forest[run_id]
        assert node.metrics == pytest.approx(metrics)
        assert node.status == "FINISHED"
        if spec is None:
            assert node.parent_id is None and node.operation is None and node.step == 0
        else:
            assert node.parent_id == built[spec.parent][0], key
            assert node.operation == spec.operation
            assert node.op_params == spec.params  # typed: floats stay floats
            assert node.step == forest[node.parent_id].step + 1 == node.depth
    assert sorted(forest[base_id].children) == sorted(built[s.key][0] for s in STUDY_SPECS if s.parent == "base")


def test_reader_accepts_experiment_id_and_reports_unknown(sqlite_uri: str) -> None:
    with cc.log_base_model("b", experiment="e") as base:
        pass
    assert len(ExperimentReader(base.experiment_id).forest()) == 1
    with pytest.raises(cc.MlflowCCError, match="not found.*experiments there: .*e"):
        ExperimentReader("nope")


def _raw_run(client: MlflowClient, exp_id: str, name: str, tags: dict[str, str] | None = None,
             status: str = "FINISHED") -> str:
    run = client.create_run(exp_id, run_name=name, tags=tags or {})
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_plain_mlflow_nested_runs_form_the_tree(sqlite_uri: str) -> None:
    mlflow.set_experiment("plain")
    with mlflow.start_run(run_name="resnet") as parent:
        mlflow.log_metric("acc", 0.9)
        with mlflow.start_run(run_name="resnet-pruned", nested=True) as child:
            mlflow.log_param("sparsity", "0.5")
    forest = ExperimentReader("plain").forest()
    assert forest.roots == [parent.info.run_id]
    node = forest[child.info.run_id]
    assert node.parent_id == parent.info.run_id and node.name == "resnet-pruned"
    assert node.operation is None and node.params == {"sparsity": "0.5"}
    assert forest.warnings == []


def test_missing_and_deleted_parents_become_orphan_roots(sqlite_uri: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("bad")
    gone = _raw_run(client, exp, "gone")
    orphan = _raw_run(client, exp, "orphan", {contract.TAG_PARENT: "f" * 32})
    bad_id = _raw_run(client, exp, "bad-id", {contract.TAG_PARENT: "not a run id!"})
    child_of_deleted = _raw_run(client, exp, "child-of-deleted", {contract.TAG_PARENT: gone})
    client.delete_run(gone)
    forest = ExperimentReader("bad").forest()
    assert set(forest.roots) == {orphan, bad_id, child_of_deleted}
    kinds = {(w.kind, w.run_id) for w in forest.warnings}
    assert ("orphan", orphan) in kinds and ("orphan", bad_id) in kinds
    assert ("deleted_parent", child_of_deleted) in kinds


def test_cycles_are_broken_and_reported(sqlite_uri: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("cyc")
    a = _raw_run(client, exp, "a")
    b = _raw_run(client, exp, "b", {contract.TAG_PARENT: a})
    c = _raw_run(client, exp, "c", {contract.TAG_PARENT: b})
    client.set_tag(a, contract.TAG_PARENT, c)  # a -> c -> b -> a
    selfish = _raw_run(client, exp, "self")
    client.set_tag(selfish, contract.TAG_PARENT, selfish)
    forest = ExperimentReader("cyc").forest()
    assert set(forest.roots) == {a, selfish}  # cut at the earliest-started run of the cycle
    assert forest[c].parent_id == b and forest[b].parent_id == a
    cycles = [w for w in forest.warnings if w.kind == "cycle"]
    assert {w.run_id for w in cycles} == {a, selfish}
    assert len(list(forest.walk())) == 4


def test_parent_in_another_experiment_is_followed(sqlite_uri: str) -> None:
    with cc.log_base_model("shared-base", experiment="team-bases") as base:
        base.log_metric("accuracy", 0.9)
    with cc.derive_model(base, "prune", {"sparsity": 0.5}, experiment="mine") as child:
        pass
    forest = ExperimentReader("mine").forest()
    assert forest.roots == [base.run_id]
    assert forest[base.run_id].external and not forest[child.run_id].external
    assert forest[child.run_id].parent_id == base.run_id
    assert [w.kind for w in forest.warnings] == ["external"]


def test_running_and_failed_runs_are_marked(sqlite_uri: str) -> None:
    base = cc.log_base_model("base", experiment="e")  # still running
    with pytest.raises(ValueError), cc.derive_model(base, "prune", {"sparsity": 0.5}):
        raise ValueError("bad mask")
    forest = ExperimentReader("e").forest()
    assert forest[base.run_id].is_running
    failed = [n for n in forest if n.is_failed]
    assert len(failed) == 1 and failed[0].failure_reason == "ValueError: bad mask"
    assert any(w.kind == "failed" and "bad mask" in w.message for w in forest.warnings)
    base.end()


def test_unreadable_operation_tags_are_reported(sqlite_uri: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("tags")
    root = _raw_run(client, exp, "root")
    child = _raw_run(client, exp, "child", {contract.TAG_PARENT: root, contract.TAG_OPERATION: "prune",
                                            contract.TAG_OPERATION_PARAMS: "{not json",
                                            contract.TAG_STEP: "two"})
    forest = ExperimentReader("tags").forest()
    assert forest[child].parent_id == root and forest[child].operation == "prune"
    assert any(w.kind == "bad_tag" and w.run_id == child for w in forest.warnings)


def test_incremental_refresh_fetches_only_new_and_running(store_uri: str, experiment_name: str) -> None:
    built = build_study_shape(experiment_name)
    running = cc.derive_model(built["base"][0], "prune", {"sparsity": 0.99}, name="still-training")
    reader = ExperimentReader(experiment_name)
    assert len(reader.forest()) == 21 and reader.forest()[running.run_id].is_running
    assert reader.last_fetch_count == 21
    running.log_metric("accuracy", 0.2)
    running.end()
    with cc.derive_model(built["q8"][0], "finetune", {"epochs": 1}, name="new-one") as new:
        pass
    forest = reader.refresh()
    assert len(forest) == 22
    assert forest[new.run_id].parent_id == built["q8"][0]
    assert forest[running.run_id].status == "FINISHED"
    assert forest[running.run_id].metrics["accuracy"] == 0.2
    # Only the new run, the run that was running, and the newest run seen before are re-read.
    assert reader.last_fetch_count <= 4


def test_tree_cli_text_and_json(sqlite_uri: str) -> None:
    built = build_study_shape("cli")
    env = {**_environ(), "MLFLOW_TRACKING_URI": sqlite_uri}
    out = subprocess.run([sys.executable, "-m", "mlflow_cc.cli", "tree", "--experiment", "cli"],
                         env=env, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("cnn-base  base  accuracy=97.0%")
    assert any(line.startswith("      mag50_cal_q  quantize(bits=8, method=dynamic)") for line in lines)
    assert lines[-1] == "20 model(s), 1 root(s)"
    doc = json.loads(subprocess.run(
        [sys.executable, "-m", "mlflow_cc.cli", "tree", "-e", "cli", "--json", "--tracking-uri", sqlite_uri],
        env=_environ(), capture_output=True, text=True, check=True).stdout)
    nodes = {n["run_id"]: n for n in doc["nodes"]}
    assert len(nodes) == 20 and doc["warnings"] == []
    q = nodes[built["mag50_cal_q"][0]]
    assert q["parent"] == built["mag50_cal"][0] and q["operation"] == "quantize"
    assert q["params"] == {"bits": 8, "method": "dynamic"} and q["status"] == "FINISHED"
    assert set(q["metrics"]) >= {"accuracy", "size_bytes"}
    bad = subprocess.run([sys.executable, "-m", "mlflow_cc.cli", "tree", "-e", "missing"], env=env,
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "experiment 'missing' not found" in bad.stderr


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
