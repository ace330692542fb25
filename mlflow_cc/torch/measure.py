"""Efficiency measurements of a model, logged under the contract's metric names.

Units: ``size_bytes`` and ``nonzero_bytes`` in bytes, ``latency_ms`` in milliseconds (on CPU and GPU alike),
counts as plain integers, ``sparsity`` as a fraction in [0, 1].
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch
from torch import nn

from mlflow_cc import contract
from mlflow_cc.torch.effective import effective_tensors
from mlflow_cc.torch.forward import call_model, model_device, to_device
from mlflow_cc.track.tracking import ModelRun


def size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state serialized as safetensors.

    Pruned modules count once (masks folded in, dense storage); dynamically quantized modules
    count their packed int8 weights plus scales and zero points, not a float copy. Computed from
    the tensor sizes and the file header (within a few bytes of ``safetensors.torch.save``),
    without building the file in memory, so it is cheap on large models.
    """
    # (dtype, shape, bytes) only: a pruned model's effective tensors are made one at a time
    stored = {t.name + (f".{suffix}" if suffix else ""):
              (_SAFETENSORS_DTYPES.get(x.dtype, "F32"), list(x.shape), x.numel() * x.element_size())
              for t in effective_tensors(model) for suffix, x in t.stored.items()}
    header: dict[str, dict[str, object]] = {}
    offset = 0
    for name in sorted(stored):  # sorted: the same tensors give the same size in any module order
        dtype, shape, nbytes = stored[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    return 8 + len(text) + (-len(text) % 8) + offset


#: safetensors' dtype codes (for the header length only).
_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL"}


def counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters), counting a pruned or quantized tensor once, buffers not."""
    total = nonzero = 0
    for t in effective_tensors(model, buffers=False):
        total += t.value.numel()
        nonzero += int(torch.count_nonzero(t.value))
    return total, nonzero


def nonzero_bytes(model: nn.Module) -> int:
    """Bytes of the model's nonzero stored values: what pruning saves, unlike ``size_bytes``.

    Each tensor (parameters and float buffers, as :func:`size_bytes` counts them) contributes its
    nonzero effective values times its stored element size (1 byte for int8-quantized weights),
    plus its quantization scales and zero points. Sparse-format indices are not counted.
    """
    total = 0
    for t in effective_tensors(model):
        main = t.stored.get("")
        size = main.element_size() if main is not None else t.value.element_size()
        total += int(torch.count_nonzero(t.value)) * size
        total += sum(x.numel() * x.element_size() for suffix, x in t.stored.items() if suffix)
    return total


def sparse_bytes(model: nn.Module) -> int:
    """Bytes of the model stored in a bitmask sparse format: what a pruned model compresses to.

    Per tensor (as :func:`nonzero_bytes` counts them), the smaller of its dense bytes and its
    nonzero values plus a one-bit-per-element mask; quantization scales and zero points added.
    Unlike :func:`nonzero_bytes` it is a size a file could have: a dense model stays at its
    dense size, a 2:4 or 50 % pruned one falls to a little over half.
    """
    total = 0
    for t in effective_tensors(model):
        main = t.stored.get("")
        size = main.element_size() if main is not None else t.value.element_size()
        numel = t.value.numel()
        total += min(numel * size, int(torch.count_nonzero(t.value)) * size + -(-numel // 8))
        total += sum(x.numel() * x.element_size() for suffix, x in t.stored.items() if suffix)
    return total


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
        contract.METRIC_NONZERO_BYTES: float(nonzero_bytes(model)),
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
