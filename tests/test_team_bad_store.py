"""A shared store holds what anyone wrote: bad artifacts, unsafe paths, broken lineage. None is fatal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.artifacts import (
    load_dataset,
    load_layer_summary,
    load_outputs,
    log_layers,
    log_outputs,
    open_tensors,
    summarize_tensor,
)
from mlflow_cc.artifacts.files import artifact_path, safe_artifact_path
from mlflow_cc.errors import ArtifactError
from mlflow_cc.read.reader import ExperimentReader
from testing.local_server import MlflowServer


def _log_model(uri: str, parent: cc.ModelRun, name: str) -> cc.ModelRun:
    with cc.derive_model(parent, "prune", {"sparsity": 0.5}, name=name, tracking_uri=uri) as m:
        log_outputs(m.run_id, ["a", "b", "c"], np.eye(3), [0, 1, 2], client=m.client)
        w = np.arange(12, dtype=np.float32).reshape(3, 4)
        log_layers(m.run_id, pd.DataFrame([summarize_tensor("fc", "weight", "Linear", w)]), {"fc.weight": w},
                   client=m.client)
    return m


def _server_file(server: MlflowServer, client: MlflowClient, run_id: str, path: str) -> Path:
    uri = client.get_run(run_id).info.artifact_uri  # mlflow-artifacts:/<exp>/<run>/artifacts
    return server.artifacts_dir / uri.split(":", 1)[1].lstrip("/") / path


@pytest.mark.parametrize("path", ["../outputs.parquet", "/etc/passwd", "mlflow_cc/../../x", "a//b", "",
                                  ".", "a\\..\\b", "C:/windows", "a/\x00b", "mlflow_cc/./x"])
def test_unsafe_artifact_paths_are_refused(path: str) -> None:
    with pytest.raises(ArtifactError, match="refused") as err:
        safe_artifact_path("0123456789abcdef0123456789abcdef", path)
    assert err.value.reason == "unreadable"


@pytest.mark.parametrize("run_id", ["../../etc", "/tmp", "a/b", "", "..", "x" * 200, "id with space"])
def test_unsafe_run_ids_are_refused(run_id: str) -> None:
    with pytest.raises(ArtifactError, match="is not a run id"):
        safe_artifact_path(run_id, contract.ARTIFACT_OUTPUTS)


def test_tags_cannot_lead_reads_out_of_the_artifact_root(sqlite_uri: str, tmp_path: Path) -> None:
    """A dataset-run tag naming a path, and a symlink planted in a run's artifacts, both refused."""
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(b"not yours")
    with cc.log_base_model("base", experiment="e") as base:
        log_outputs(base.run_id, ["a"], np.ones((1, 2)), [0], client=base.client,
                    dataset_run_id="../../../../../etc")
    client = MlflowClient()
    outputs = load_outputs(client, base.run_id)
    with pytest.raises(ArtifactError, match="is not a run id"):
        load_dataset(client, outputs.dataset_run_id or "")
    root = Path(client.get_run(base.run_id).info.artifact_uri.removeprefix("file://"))
    planted = root / contract.ARTIFACT_LAYER_SUMMARY
    planted.parent.mkdir(parents=True)
    os.symlink(secret, planted)
    with pytest.raises(ArtifactError, match="points outside the run's artifact root"):
        load_layer_summary(client, base.run_id)
    assert artifact_path(client, base.run_id, contract.ARTIFACT_OUTPUTS).is_file()  # the good one still reads


def test_corrupt_truncated_and_oversized_artifacts_give_per_model_messages(
        postgres_server: MlflowServer, experiment_name: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = postgres_server.url
    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache"))
    client = MlflowClient(uri)
    with cc.log_base_model("base", experiment=experiment_name, tracking_uri=uri) as base:
        pass
    good, truncated, garbage = (_log_model(uri, base, n) for n in ("good", "truncated", "garbage"))
    out_file = _server_file(postgres_server, client, truncated.run_id, contract.ARTIFACT_OUTPUTS)
    out_file.write_bytes(out_file.read_bytes()[: out_file.stat().st_size // 2])
    w_file = _server_file(postgres_server, client, garbage.run_id, contract.ARTIFACT_WEIGHTS)
    w_file.write_bytes(b"\xff" * 64)

    assert load_outputs(client, good.run_id).logits.shape == (3, 3)
    with pytest.raises(ArtifactError, match=f"outputs of run {truncated.run_id} .*not readable Parquet") as err:
        load_outputs(client, truncated.run_id)
    assert err.value.reason == "unreadable"
    with pytest.raises(ArtifactError, match=f"weights of run {garbage.run_id} is not a readable safetensors"):
        open_tensors(client, garbage.run_id)
    with open_tensors(client, good.run_id) as tensors:
        assert tensors.get("fc.weight")[2, 3] == 11

    monkeypatch.setenv("MLFLOW_CC_MAX_ARTIFACT_MB", "0.0001")  # ~100 bytes
    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache2"))
    with pytest.raises(ArtifactError, match=f"of run {good.run_id} is .* over the limit .*MLFLOW_CC_MAX_ARTIFACT_MB") \
            as err:
        open_tensors(client, good.run_id)
    assert err.value.reason == "too large"
    assert not (tmp_path / "cache2").exists()  # refused before any byte was downloaded


def test_malformed_lineage_is_reported_not_fatal(postgres_server: MlflowServer, experiment_name: str) -> None:
    client = MlflowClient(postgres_server.url)
    exp = client.create_experiment(experiment_name)

    def run(name: str, parent: str | None = None) -> str:
        tags = {contract.TAG_PARENT: parent} if parent else {}
        rid = client.create_run(exp, run_name=name, tags=tags).info.run_id
        client.set_terminated(rid)
        return rid

    root = run("root")
    bad = {name: run(name, parent) for name, parent in [
        ("bad-id", "not a run id!"), ("sql-ish", "' OR 1=1 --"), ("html", "<script>alert(1)</script>"),
        ("far-too-long", "f" * 5000)]}
    selfish = run("self")
    client.set_tag(selfish, contract.TAG_PARENT, selfish)
    ring = [run(f"ring-{i}") for i in range(60)]  # a long cycle: ring-0 <- ring-1 <- ... <- ring-59 <- ring-0
    for child, parent in zip(ring, [ring[-1], *ring[:-1]]):
        client.set_tag(child, contract.TAG_PARENT, parent)
    client.set_tag(root, contract.TAG_OPERATION_PARAMS, "[1, 2")  # unreadable operation parameters
    forest = ExperimentReader(exp, postgres_server.url).forest()
    assert len(forest) == 2 + len(bad) + len(ring)
    assert len(list(forest.walk())) == len(forest)  # every model is drawn exactly once
    kinds = {(w.kind, w.run_id) for w in forest.warnings}
    assert {("orphan", rid) for rid in bad.values()} <= kinds
    assert ("cycle", selfish) in kinds and ("cycle", ring[0]) in kinds  # cut at its earliest run
    assert ("bad_tag", root) in kinds
    assert max(forest[r].depth for r in ring) == len(ring) - 1
