"""Efficiency measurements on real torch models: size, counts, sparsity, latency, logging."""

from __future__ import annotations

import warnings

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.torch import measure
from mlflow_cc.torch.effective import copy_model, effective_tensors


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.BatchNorm1d(20), nn.Linear(20, 4)).eval()


def test_counts_and_size_of_a_float_model() -> None:
    model = small_model()
    params = 10 * 20 + 20 + 20 + 20 + 20 * 4 + 4
    assert measure.param_count(model) == params
    assert measure.nonzero_count(model) == params - 20  # BatchNorm's bias starts at zero
    assert measure.sparsity(model) == pytest.approx(20 / params)
    # float32 tensors (parameters and BatchNorm running stats) plus a small safetensors header
    floats = params + 2 * 20
    size = measure.size_bytes(model)
    assert floats * 4 < size < floats * 4 + 2000


def test_pruned_model_counts_effective_weights_once() -> None:
    model = small_model()
    torch_prune.l1_unstructured(model[0], "weight", amount=0.5)
    assert measure.param_count(model) == measure.param_count(small_model())
    assert measure.nonzero_count(model) == measure.param_count(model) - 100 - 20
    assert measure.sparsity(model) == pytest.approx(120 / measure.param_count(model))
    # the mask is folded in: the size is that of the dense effective weights, not orig + mask
    assert measure.size_bytes(model) == measure.size_bytes(small_model())


def test_nonzero_bytes_falls_with_pruning_and_quantization() -> None:
    model = small_model()
    floats = measure.param_count(model) + 2 * 20  # parameters and BatchNorm running stats
    zeros = 20 + 20  # BatchNorm's bias and running mean start at zero
    assert measure.nonzero_bytes(model) == (floats - zeros) * 4
    pruned = copy_model(model)
    torch_prune.l1_unstructured(pruned[0], "weight", amount=0.5)
    # size_bytes does not see pruning; nonzero_bytes loses the 100 pruned weights
    assert measure.size_bytes(pruned) == measure.size_bytes(model)
    assert measure.nonzero_bytes(pruned) == measure.nonzero_bytes(model) - 100 * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(copy_model(model), {nn.Linear}, dtype=torch.qint8)
    assert measure.nonzero_bytes(quantized) < measure.nonzero_bytes(model) - 2 * (10 * 20 + 20 * 4)


def test_quantized_model_counts_packed_int8() -> None:
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(copy_model(model), {nn.Linear}, dtype=torch.qint8)
    assert measure.param_count(quantized) == measure.param_count(model)
    # Linear weights shrink from 4 bytes to 1 each; a scale and a zero point per tensor (and their
    # header entries) are added
    linear_weights = 10 * 20 + 20 * 4
    saved = measure.size_bytes(model) - measure.size_bytes(quantized)
    assert 1.5 * linear_weights < saved < 3 * linear_weights
    dtypes = {t.name: t.dtype for t in effective_tensors(quantized)}
    assert dtypes["0.weight"] == "qint8" and dtypes["0.bias"] == "float32"


def test_latency_is_milliseconds_and_restores_mode() -> None:
    model = small_model().train()
    ms = measure.latency_ms(model, torch.randn(32, 10), warmup=1, runs=5)
    assert 0 < ms < 1000
    assert model.training  # mode restored
    slow = nn.Sequential(*[nn.Linear(512, 512) for _ in range(8)])
    assert measure.latency_ms(slow, torch.randn(256, 512), runs=3) > measure.latency_ms(
        nn.Linear(512, 1), torch.randn(1, 512), runs=3)


def test_log_efficiency_uses_contract_names(sqlite_uri: str) -> None:
    model = small_model()
    with cc.log_base_model("m", experiment="measure") as run:
        logged = measure.log_efficiency(run, model, torch.randn(8, 10), runs=3)
    metrics = MlflowClient(sqlite_uri).get_run(run.run_id).data.metrics
    names = {contract.METRIC_SIZE, contract.METRIC_PARAMS, contract.METRIC_NONZERO, contract.METRIC_SPARSITY,
             contract.METRIC_LATENCY, contract.METRIC_NONZERO_BYTES}
    assert names == set(logged) and names <= set(metrics)
    assert metrics[contract.METRIC_PARAMS] == measure.param_count(model)
    # without a sample input there is no latency
    assert contract.METRIC_LATENCY not in measure.efficiency(model)
