"""Capture round trips: outputs, dataset previews, layers and activations written by the torch
capture and read back with the artifact_io readers, on a real sqlite store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.artifacts import (
    load_dataset,
    load_layer_summary,
    load_outputs,
    open_tensors,
)
from mlflow_cc.studies.digits_data import DigitsCNN, load_digits_split
from mlflow_cc.studies.digits_eval import accuracy_metric, digits_eval_set
from mlflow_cc.torch import Capture, EvalSet, log_base, prune, quantize
from mlflow_cc.torch.activations import ACTIVATION_CAP, hooked_modules, sample_positions
from mlflow_cc.torch.effective import effective_tensors
from mlflow_cc.torch.evalset import evaluate


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, EvalSet]:
    split = load_digits_split(seed=0)
    split.x_test, split.y_test, split.test_ids = split.x_test[:80], split.y_test[:80], split.test_ids[:80]
    torch.manual_seed(0)
    return DigitsCNN(channels=8).eval(), digits_eval_set(split)


def capture_for(eval_set: EvalSet, **kwargs: object) -> Capture:
    return Capture(eval_set, metrics=accuracy_metric(np.asarray(eval_set.labels)),
                   sample_input=eval_set.inputs[:8], progress=False, latency_runs=2, **kwargs)  # type: ignore[index,arg-type]


def test_outputs_round_trip(sqlite_uri: str, digits: tuple[nn.Module, EvalSet]) -> None:
    model, eval_set = digits
    run = log_base(model, "cnn", experiment="capture", capture=capture_for(eval_set))
    client = MlflowClient(sqlite_uri)
    outputs = load_outputs(client, run.run_id)
    expected = evaluate(model, eval_set, progress=False)["logits"]
    assert list(outputs.instance_ids) == list(eval_set.instance_ids)
    assert np.array_equal(outputs.labels, np.asarray(eval_set.labels))
    np.testing.assert_allclose(outputs.logits, expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(outputs.predictions, expected.argmax(1))
    metrics = client.get_run(run.run_id).data.metrics
    assert metrics["accuracy"] == pytest.approx(float((expected.argmax(1) == eval_set.labels).mean()))
    assert {contract.METRIC_SIZE, contract.METRIC_LATENCY, contract.METRIC_SPARSITY} <= set(metrics)
    assert outputs.dataset == "digits-test" and outputs.dataset_run_id


def test_previews_are_stored_once_per_experiment(sqlite_uri: str, digits: tuple[nn.Module, EvalSet]) -> None:
    model, eval_set = digits
    capture = capture_for(eval_set, layers=False)
    base = log_base(model, "cnn", experiment="shared", capture=capture)
    # a second Capture object (another script) finds the same dataset run instead of a new one
    _, pruned = prune(model, base, sparsity=0.5, capture=capture_for(eval_set, layers=False))
    client = MlflowClient(sqlite_uri)
    dataset_ids = {load_outputs(client, r.run_id).dataset_run_id for r in (base, pruned)}
    assert len(dataset_ids) == 1
    dataset_runs = client.search_runs([base.experiment_id], f"tags.`{contract.TAG_KIND}` = 'dataset'")
    assert [r.info.run_id for r in dataset_runs] == list(dataset_ids)
    # the model runs hold no previews of their own
    for run in (base, pruned):
        paths = [f.path for f in client.list_artifacts(run.run_id, contract.ARTIFACT_ROOT)]
        assert not any("dataset" in p for p in paths)
    dataset = load_dataset(client, dataset_ids.pop())
    assert dataset.class_names == [str(d) for d in range(10)]
    preview = dataset.preview(eval_set.instance_ids[0])
    assert preview is not None and preview.kind == "image" and len(preview.value) > 20


def test_layers_of_a_pruned_model(sqlite_uri: str, digits: tuple[nn.Module, EvalSet]) -> None:
    model, eval_set = digits
    base = log_base(model, "cnn", experiment="layers")
    pruned_model, run = prune(model, base, sparsity=0.6, exclude_types=["norm"], tensors=["weight"],
                              capture=capture_for(eval_set))
    client = MlflowClient(sqlite_uri)
    summary = load_layer_summary(client, run.run_id)
    names = [f"{m}.{t}" for m, t in zip(summary["module"], summary["tensor"])]
    assert not any(n.endswith(("_orig", "_mask")) for n in names)
    assert "features.1.running_mean" in names  # BatchNorm statistics are part of the layers
    effective = {t.name: t.value.numpy() for t in effective_tensors(pruned_model)}
    with open_tensors(client, run.run_id, "weights") as weights:
        assert sorted(weights.keys()) == sorted(effective)
        for name, value in effective.items():
            np.testing.assert_array_equal(weights.get(name), value)
        conv = weights.get("features.0.weight")
        assert (conv == 0).any()  # the mask is applied
        np.testing.assert_array_equal(weights.get("features.1.weight"), model.features[1].weight.detach().numpy())
    row = summary[(summary["module"] == "features.0") & (summary["tensor"] == "weight")].iloc[0]
    assert row["zeros"] == int((effective["features.0.weight"] == 0).sum()) and row["numel"] == 8 * 9
    assert row["std"] == pytest.approx(float(effective["features.0.weight"].std()), rel=1e-5)


def test_quantized_layers_are_dequantized(sqlite_uri: str, digits: tuple[nn.Module, EvalSet]) -> None:
    model, eval_set = digits
    base = log_base(model, "cnn", experiment="quantized")
    _, run = quantize(model, base, capture=capture_for(eval_set, activations=False))
    client = MlflowClient(sqlite_uri)
    summary = load_layer_summary(client, run.run_id).set_index(["module", "tensor"])
    assert summary.loc[("classifier.1", "weight"), "dtype"] == "qint8"
    assert bool(summary.loc[("classifier.1", "weight"), "quantized"])
    assert not bool(summary.loc[("features.0", "weight"), "quantized"])
    with open_tensors(client, run.run_id, "weights") as weights:
        for name in ("classifier.1.weight", "classifier.3.weight"):
            float_w = model.get_submodule(name.rsplit(".", 1)[0]).weight.detach().numpy()
            dequantized = weights.get(name)
            step = (float_w.max() - float_w.min()) / 255  # per-tensor int8 scale
            assert dequantized.shape == float_w.shape
            np.testing.assert_allclose(dequantized, float_w, atol=step)
            assert not np.array_equal(dequantized, float_w)  # quantization did change them
        np.testing.assert_array_equal(weights.get("features.0.weight"), model.features[0].weight.detach().numpy())


def test_activations_sample_the_same_instances_and_positions(sqlite_uri: str,
                                                             digits: tuple[nn.Module, EvalSet]) -> None:
    model, eval_set = digits
    capture = capture_for(eval_set, activation_instances=16, activation_cap=100)
    base = log_base(model, "cnn", experiment="activations", capture=capture)
    with cc.derive_model(base, "copy") as copy_run:
        capture.log(copy_run, model)
    _, pruned = prune(model, base, sparsity=0.5, capture=capture)
    client = MlflowClient(sqlite_uri)
    files = [open_tensors(client, r.run_id, "activations") for r in (base, copy_run, pruned)]
    try:
        keys = files[0].keys()
        assert keys == files[1].keys() == files[2].keys()
        assert set(keys) == {name for name, _ in hooked_modules(model)}
        meta = [f.metadata() for f in files]
        ids = meta[0]["activation_instance_ids"].split(",")
        assert len(ids) == 16 and set(ids) <= set(eval_set.instance_ids)
        assert meta[0]["activation_instance_ids"] == meta[2]["activation_instance_ids"]
        for key in keys:
            values = [f.get(key) for f in files]
            assert values[0].ndim == 1 and values[0].size <= 100
            np.testing.assert_array_equal(values[0], values[1])  # same model: same sampled values
        assert any(not np.array_equal(files[0].get(k), files[2].get(k)) for k in keys)
    finally:
        for f in files:
            f.close()


def test_sample_positions_depend_only_on_name_size_and_seed() -> None:
    a = sample_positions("encoder.layer.0", 50_000, ACTIVATION_CAP, seed=0)
    assert a is not None and a.size == ACTIVATION_CAP and np.all(np.diff(a) > 0)
    assert np.array_equal(a, sample_positions("encoder.layer.0", 50_000, ACTIVATION_CAP, seed=0))
    assert not np.array_equal(a, sample_positions("encoder.layer.1", 50_000, ACTIVATION_CAP, seed=0))
    assert sample_positions("small", 100, ACTIVATION_CAP, seed=0) is None


def test_capture_leaves_the_model_unchanged(digits: tuple[nn.Module, EvalSet], sqlite_uri: str) -> None:
    model, eval_set = digits
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        log_base(model, "cnn", experiment="unchanged", capture=capture_for(eval_set))
        assert model.training
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert all(not m._forward_hooks for m in model.modules())
    finally:
        model.eval()
