"""Many writers on a shared PostgreSQL-backed ``mlflow server``: nothing lost, failures visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from safetensors.numpy import load_file

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.artifacts import load_outputs, log_outputs, open_tensors
from mlflow_cc.errors import ArtifactError
from mlflow_cc.read.reader import ExperimentReader
from testing.concurrent_writers import TENSORS, expected_arrays, run_writers
from testing.fault_proxy import FaultProxy
from testing.local_server import MlflowServer

WRITERS, MODELS_EACH = 8, 25
#: Writers retry quickly in tests (MLflow's defaults wait up to minutes, right for real servers).
FAST_RETRY_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def _run_dir(server: MlflowServer, run: object) -> Path:
    """Where the server keeps a run's artifacts (``mlflow-artifacts:/<exp>/<run>/artifacts``)."""
    uri = run.info.artifact_uri  # type: ignore[attr-defined]
    return server.artifacts_dir / uri.split(":", 1)[1].lstrip("/")


def test_eight_writers_through_flaky_network_lose_nothing(postgres_server: MlflowServer,
                                                          experiment_name: str) -> None:
    proxy = FaultProxy(postgres_server.url, fail_rate=0.03, seed=7).start()
    try:
        with cc.log_base_model("base", experiment=experiment_name, tracking_uri=postgres_server.url) as base:
            base.log_metrics({"accuracy": 0.9})
        records = run_writers(proxy.url, base.run_id, WRITERS, MODELS_EACH, env=FAST_RETRY_ENV)
    finally:
        proxy.stop()
    assert proxy.injected > 10  # the writers did meet (and retry through) server errors
    assert len(records) == WRITERS * MODELS_EACH

    client = MlflowClient(postgres_server.url)
    forest = ExperimentReader(experiment_name, postgres_server.url).forest()
    assert len(forest) == 1 + WRITERS * MODELS_EACH and forest.warnings == []
    assert forest.roots == [base.run_id]
    runs = {r.info.run_id: r for r in client.search_runs([forest[base.run_id].experiment_id],
                                                         max_results=1000)}
    for rec in records:
        node = forest[rec["run_id"]]
        assert node.status == "FINISHED" and node.parent_id == rec["parent"], rec["name"]
        assert node.operation == rec["operation"] and node.op_params == rec["params"]
        assert node.metrics == rec["metrics"] and node.name == rec["name"]
        assert node.step == node.depth
        expected = expected_arrays(rec["writer"], rec["index"])
        folder = _run_dir(postgres_server, runs[rec["run_id"]])
        outputs = pq.read_table(folder / contract.ARTIFACT_OUTPUTS)
        # K little-endian float32 per row (outputs schema version 3)
        logits = np.frombuffer(b"".join(outputs.column("logits").to_pylist()), "<f4").reshape(expected["logits"].shape)
        np.testing.assert_array_equal(logits, expected["logits"])
        weights = load_file(folder / contract.ARTIFACT_WEIGHTS)
        assert set(weights) == set(TENSORS)
        for name in TENSORS:
            np.testing.assert_array_equal(weights[name], expected[name])
        assert pq.read_table(folder / contract.ARTIFACT_LAYER_SUMMARY).num_rows == len(TENSORS)
    # And through the reader's own artifact path (HTTP download), one model per writer.
    for rec in records[::MODELS_EACH]:
        expected = expected_arrays(rec["writer"], rec["index"])
        np.testing.assert_array_equal(load_outputs(client, rec["run_id"]).logits, expected["logits"])
        with open_tensors(client, rec["run_id"]) as tensors:
            np.testing.assert_array_equal(tensors.get("fc.weight"), expected["fc.weight"])


@pytest.mark.parametrize("caught", [False, True])
def test_run_whose_artifact_cannot_be_written_is_failed(caught: bool, postgres_server: MlflowServer,
                                                        experiment_name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**FAST_RETRY_ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                       "MLFLOW_CC_UPLOAD_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(key, value)
    proxy = FaultProxy(postgres_server.url, fail_when=lambda method, path: method == "PUT").start()
    try:
        with cc.log_base_model("base", experiment=experiment_name, tracking_uri=proxy.url) as base:
            pass
        model = cc.derive_model(base, "prune", {"sparsity": 0.5}, tracking_uri=proxy.url)
        with model:
            try:
                log_outputs(model.run_id, ["a", "b"], np.eye(2), client=model.client)
            except ArtifactError as exc:
                assert "outputs.parquet could not be written" in str(exc) and exc.reason == "not written"
                if not caught:
                    raise
    except ArtifactError:
        assert not caught
    finally:
        proxy.stop()
    run = MlflowClient(postgres_server.url).get_run(model.run_id)
    assert run.info.status == "FAILED"  # even when the script caught the error and went on
    assert "mlflow_cc/outputs.parquet could not be written" in run.data.tags[contract.TAG_FAILURE]
    node = ExperimentReader(experiment_name, postgres_server.url).forest()[model.run_id]
    assert node.is_failed and "could not be written" in (node.failure_reason or "")

