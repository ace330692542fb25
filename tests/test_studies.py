"""The case studies build real experiments: the demo builder, the digits, bias and transformer studies."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

from mlflow_cc import contract
from mlflow_cc.artifacts import (
    load_dataset,
    load_layer_summary,
    load_outputs,
    open_tensors,
)
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.studies import transformer_repair
from mlflow_cc.studies.demo import build_demo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_builds_the_digits_study_then_skips_it(sqlite_uri: str) -> None:
    statuses = dict(build_demo(sqlite_uri, only=["digits_study"]))
    assert statuses["digits_study"].startswith("built: 26 models"), statuses
    forest = ExperimentReader("digits-compression", sqlite_uri).forest()
    nodes = list(forest)
    assert len(forest.roots) == 1 and len(nodes) - 1 >= 19 and forest.warnings == []
    assert all(n.status == "FINISHED" for n in nodes)
    assert {n.operation for n in nodes} == {None, "prune", "quantize", "finetune", "calibrate"}
    chains = set()
    for node in nodes:
        ops, current = [], node
        while current.parent_id is not None:
            ops.append(current.operation)
            current = forest[current.parent_id]
        chains.add(" > ".join(reversed(ops)))
    assert {"prune > quantize", "prune > calibrate > quantize", "prune > finetune", "quantize"} <= chains
    assert forest[forest.roots[0]].metrics["accuracy"] > 0.95
    client = MlflowClient(sqlite_uri)
    exp_id = client.get_experiment_by_name("digits-compression").experiment_id
    assert len(client.search_runs([exp_id], f"tags.`{contract.TAG_KIND}` = 'dataset'")) == 1
    info = client.get_experiment(exp_id).tags[contract.EXP_TAG_METRIC_PREFIX + "accuracy"]
    assert '"primary": true' in info and '"direction": "max"' in info
    for node in nodes[::5]:  # outputs and layers for every model (a sample read back)
        assert len(load_outputs(client, node.run_id)) == 539
        assert len(load_layer_summary(client, node.run_id)) == 16
        with open_tensors(client, node.run_id, "activations") as acts:
            assert len(acts.keys()) == 11
    assert dict(build_demo(sqlite_uri, only=["digits_study"]))["digits_study"].startswith("skipped")
    with pytest.raises(ValueError, match="unknown case studies"):
        list(build_demo(sqlite_uri, only=["nope"]))


def test_bias_study_example_marks_rare_classes(sqlite_uri: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bias_study.py", "--tracking-uri", sqlite_uri])
    runpy.run_path(str(EXAMPLES / "bias_study.py"), run_name="__main__")
    assert "8 models logged to experiment 'compression-bias'" in capsys.readouterr().out
    forest = ExperimentReader("compression-bias", sqlite_uri).forest()
    sparsities = sorted(n.op_params["sparsity"] for n in forest if n.operation == "prune")
    assert sparsities == [0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99]
    client = MlflowClient(sqlite_uri)
    base = forest[forest.roots[0]]
    assert base.metrics["accuracy_rare"] < base.metrics["accuracy_common"]  # rare in training
    dataset = load_dataset(client, load_outputs(client, base.run_id).dataset_run_id)
    groups = dataset.instances.set_index("label")["meta_group"]
    assert set(groups.loc[[3, 8]]) == {"rare"} and set(groups.drop([3, 8])) == {"common"}


def test_transformer_repair_pruning_norm_layers_breaks_the_model(sqlite_uri: str) -> None:
    results = transformer_repair.build(sqlite_uri, sparsities=(0.3,), methods=("local_magnitude",))
    broken = results["local_magnitude 30% including norm"]
    repaired = results["local_magnitude 30% excluding norm"]
    assert results["base"] == {"accuracy": 1.0, "cosine_to_base": pytest.approx(1.0, abs=1e-5)}
    assert broken["cosine_to_base"] < 0.6 and repaired["cosine_to_base"] > 0.85
    assert repaired["accuracy"] > broken["accuracy"]
    forest = ExperimentReader("transformer-repair", sqlite_uri).forest()
    assert len(forest) == 3 and all(n.status == "FINISHED" for n in forest)
    client = MlflowClient(sqlite_uri)
    for node in forest:
        if node.operation != "prune":
            continue
        summary = load_layer_summary(client, node.run_id)
        norm = summary[summary["module_type"] == "LayerNorm"]
        zeros = int(norm["zeros"].sum())
        assert (zeros > 0) == (node.op_params["exclude"] == "none")
        preview = load_dataset(client, load_outputs(client, node.run_id).dataset_run_id).preview("sentence-000")
        assert preview is not None and preview.kind == "text"
