"""Efficiency measurements of a model, logged under the contract's metric names.

Units: ``size_bytes`` in bytes, ``latency_ms`` in milliseconds (on CPU and GPU alike),
counts as plain integers, ``sparsity`` as a fraction in [0, 1].
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from safetensors.torch import save as safetensors_save
from torch import nn

from mlflow_cc import contract
from mlflow_cc.torch.effective import effective_tensors
from mlflow_cc.torch.forward import call_model, model_device, to_device
from mlflow_cc.tracking import ModelRun


def size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state serialized as safetensors.

    Pruned modules count once (masks folded in, dense storage); dynamically quantized modules
    count their packed int8 weights plus scales and zero points, not a float copy.
    """
    state: dict[str, torch.Tensor] = {}
    for t in effective_tensors(model):
        for suffix, tensor in t.stored.items():
            state[t.name + (f".{suffix}" if suffix else "")] = tensor.contiguous()
    return len(safetensors_save(state))


def counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters), counting a pruned or quantized tensor once, buffers not."""
    total = nonzero = 0
    for t in effective_tensors(model, buffers=False):
        total += t.value.numel()
        nonzero += int(torch.count_nonzero(t.value))
    return total, nonzero


def param_count(model: nn.Module) -> int:
    """Number of parameters (not buffers)."""
    return counts(model)[0]


def nonzero_count(model: nn.Module) -> int:
    """Parameters that are not exactly zero (after masks, after dequantization)."""
    return counts(model)[1]


def sparsity(model: nn.Module) -> float:
    """Fraction of parameters that are exactly zero, in [0, 1]."""
    total, nonzero = counts(model)
    return 1.0 - nonzero / total if total else 0.0


def latency_ms(model: nn.Module, sample_input: Any, *, warmup: int = 3, runs: int = 10) -> float:
    """Median wall time of one forward pass on ``sample_input``, in milliseconds.

    ``warmup`` untimed passes first; then ``runs`` timed passes under ``torch.no_grad`` in eval
    mode (the model's train/eval mode is restored after). On GPU each pass is synchronised.
    """
    device = model_device(model)
    inputs = to_device(sample_input, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.no_grad():
            for i in range(warmup + runs):
                sync()
                start = time.perf_counter()
                call_model(model, inputs)
                sync()
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
    return float(statistics.median(times))


def efficiency(model: nn.Module, sample_input: Any | None = None, *, warmup: int = 3,
               runs: int = 10) -> dict[str, float]:
    """All efficiency metrics by contract name; latency only when ``sample_input`` is given."""
    total, nonzero = counts(model)
    metrics: dict[str, float] = {
        contract.METRIC_SIZE: float(size_bytes(model)),
        contract.METRIC_PARAMS: float(total),
        contract.METRIC_NONZERO: float(nonzero),
        contract.METRIC_SPARSITY: 1.0 - nonzero / total if total else 0.0,
    }
    if sample_input is not None:
        metrics[contract.METRIC_LATENCY] = latency_ms(model, sample_input, warmup=warmup, runs=runs)
    return metrics


def log_efficiency(model_run: ModelRun, model: nn.Module, sample_input: Any | None = None, *,
                   warmup: int = 3, runs: int = 10) -> dict[str, float]:
    """Measure :func:`efficiency` and log it on ``model_run``; returns the metrics."""
    metrics = efficiency(model, sample_input, warmup=warmup, runs=runs)
    model_run.log_metrics(metrics)
    return metrics
