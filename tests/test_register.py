"""*Register model*: a model version in MLflow's Model Registry with its lineage and primary
metrics as tags, an alias, and the source the run has (a logged model, else its weights)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

import mlflow_cc
from mlflow_cc import contract
from mlflow_cc.errors import LineageError
from mlflow_cc.track.register import (
    TAG_LINEAGE,
    TAG_LINEAGE_TEXT,
    TAG_METRIC_PREFIX,
    TAG_SOURCE_KIND,
    register_model,
)


def small_tree(experiment: str, tmp_path: Path) -> tuple[str, str, str]:
    mlflow_cc.set_metric_info("accuracy", direction="max", primary=True, experiment=experiment)
    with mlflow_cc.log_base_model("cnn", experiment=experiment) as base:
        base.log_metrics({"accuracy": 0.97, "size_bytes": 4000})
    with mlflow_cc.derive_model(base, "prune", {"method": "global_magnitude", "sparsity": 0.5}) as pruned:
        pruned.log_metrics({"accuracy": 0.95, "size_bytes": 4000})
    with mlflow_cc.derive_model(pruned, "quantize", {"method": "dynamic", "bits": 8, "modules": "Linear"}) as small:
        small.log_metrics({"accuracy": 0.94, "size_bytes": 1200})
        weights = tmp_path / "weights.safetensors"
        weights.write_bytes(b"not really tensors")
        small.log_artifact_file(str(weights), "mlflow_cc/layers")
    return base.run_id, pruned.run_id, small.run_id


@pytest.mark.parametrize("store_uri", ["sqlite", "server"], indirect=True)
def test_version_has_the_lineage_primary_metrics_and_alias(store_uri: str, experiment_name: str,
                                                           tmp_path: Path) -> None:
    base, pruned, small = small_tree(experiment_name, tmp_path)
    name = f"{experiment_name}-model"
    reg = register_model(small, name, alias="candidate")
    assert reg.version == "1" and reg.lineage_text == "cnn → prune 50% magnitude → quantize int8 dynamic"

    version = MlflowClient(store_uri).get_model_version_by_alias(name, "candidate")  # a fresh read
    assert str(version.version) == "1" and version.run_id == small
    assert version.source.endswith("/" + contract.ARTIFACT_WEIGHTS)
    assert version.tags[TAG_SOURCE_KIND] == "weights"
    assert json.loads(version.tags[TAG_LINEAGE]) == [
        {"run_id": base, "name": "cnn", "operation": None, "params": {}},
        {"run_id": pruned, "name": "prune 50% magnitude", "operation": "prune",
         "params": {"method": "global_magnitude", "sparsity": 0.5}},
        {"run_id": small, "name": "quantize int8 dynamic", "operation": "quantize",
         "params": {"bits": 8, "method": "dynamic", "modules": "Linear"}}]
    assert version.tags[TAG_LINEAGE_TEXT] == reg.lineage_text == version.description
    metric_tags = {k: v for k, v in version.tags.items() if k.startswith(TAG_METRIC_PREFIX)}
    assert metric_tags == {TAG_METRIC_PREFIX + "accuracy": "0.94"}  # primary only, not size

    # A second model of the same registered model: version 2, the alias moves to it
    again = register_model(pruned, name, alias="candidate")
    assert again.version == "2" and again.source_kind == "run_artifacts"
    assert MlflowClient(store_uri).get_model_version_by_alias(name, "candidate").run_id == pruned
    assert MlflowClient(store_uri).get_model_version(name, "1").run_id == small


def test_a_logged_pytorch_model_is_the_version_source(sqlite_uri: str, experiment_name: str) -> None:
    from mlflow_cc.torch import Capture, log_base

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    run = log_base(net, "linear", experiment=experiment_name,
                   capture=Capture(layers=False, outputs=False, activations=False, log_model=True))
    reg = register_model(run.run_id, "linear-model", alias="candidate")
    assert reg.source_kind == "logged_model" and reg.source.startswith("models:/m-")
    client = MlflowClient()
    assert client.get_model_version("linear-model", reg.version).source == reg.source
    logged = client.get_logged_model(reg.source.removeprefix("models:/"))
    assert logged.source_run_id == run.run_id and logged.experiment_id == run.experiment_id
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [{"name": "linear-model", "version": "1"}]
    loaded = mlflow.pytorch.load_model("models:/linear-model@candidate")
    x = torch.randn(5, 4)
    assert torch.equal(loaded(x), net(x))


def test_runs_that_are_not_models_are_refused(sqlite_uri: str, experiment_name: str, tmp_path: Path) -> None:
    base, _, small = small_tree(experiment_name, tmp_path)
    client = MlflowClient()
    client.delete_run(small)
    with pytest.raises(LineageError, match="deleted"):
        register_model(small, "x")
    exp = client.get_experiment_by_name(experiment_name).experiment_id
    dataset = client.create_run(exp, tags={contract.TAG_KIND: contract.KIND_DATASET}).info.run_id
    with pytest.raises(LineageError, match="dataset"):
        register_model(dataset, "x")
    with pytest.raises(ValueError, match="name"):
        register_model(base, "  ")
    assert client.search_registered_models() == []
