"""Layer capture: a summary row per tensor, the effective weights, and sampled activations."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlflow_cc import artifacts
from mlflow_cc.torch.activations import (
    ACTIVATION_CAP,
    ACTIVATION_INSTANCES,
    activation_indices,
    capture_activations,
)
from mlflow_cc.torch.effective import EffectiveTensor, effective_tensors
from mlflow_cc.torch.evalset import EvalSet
from mlflow_cc.track.tracking import ModelRun

#: Elements per chunk when summarizing a tensor (1 MB of float32: stays in cache).
_SUMMARY_CHUNK = 1 << 18


def tensor_summary(t: EffectiveTensor) -> dict[str, Any]:
    """One layer-summary row, the columns of :func:`mlflow_cc.artifacts.summarize_tensor`.

    Same statistics (min, max, mean, population std, zeros), computed without a float64 copy
    of the whole tensor: per chunk, numpy's pairwise float32 sums (relative error ~1e-7), the
    chunks added in float64; the std from centred squares. About twice as fast as float64
    arithmetic, which keeps a large model's layer capture near the cost of writing its weights.
    """
    flat = t.value.reshape(-1).numpy()
    n = int(flat.size)
    row: dict[str, Any] = {"module": t.module, "tensor": t.tensor, "module_type": t.module_type,
                           "shape": json.dumps(list(t.value.shape)), "numel": n,
                           "zeros": n - int(np.count_nonzero(flat)), "min": math.nan, "max": math.nan,
                           "mean": math.nan, "std": math.nan, "dtype": t.dtype, "quantized": bool(t.quantized)}
    if n:
        chunks = [flat[start:start + _SUMMARY_CHUNK] for start in range(0, n, _SUMMARY_CHUNK)]
        mean = math.fsum(float(chunk.sum(dtype=np.float32)) for chunk in chunks) / n
        buffer = np.empty(min(n, _SUMMARY_CHUNK), np.float32)
        squares = 0.0
        for chunk in chunks:
            centred = buffer[:chunk.size]
            np.subtract(chunk, np.float32(mean), out=centred)  # no BLAS: its threads stall on shared cores
            np.multiply(centred, centred, out=centred)
            squares += float(centred.sum(dtype=np.float32))
        row.update(min=float(flat.min()), max=float(flat.max()), mean=mean, std=math.sqrt(squares / n))
    return row


def layer_tables(model: nn.Module, weights_exclude: Sequence[str] = (), *,
                 sample_above: int | None = None, sample_size: int = artifacts.SAMPLE_SIZE,
                 seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, list[int]]]:
    """(summary rows, effective weights, sampled) of every parameter and float buffer of ``model``.

    Tensors whose names match a ``weights_exclude`` pattern (fnmatch) are summarized but their
    values not returned (to keep artifacts small, e.g. a large embedding table). Tensors of more
    than ``sample_above`` elements are returned as ``sample_size`` values at the positions of
    :func:`mlflow_cc.artifacts.sample_positions` (``sampled``: their full shapes); their summary
    rows stay exact. ``sample_above=None``: every tensor in full.
    """
    rows: list[dict[str, Any]] = []
    weights: dict[str, np.ndarray] = {}
    sampled: dict[str, list[int]] = {}
    for t in effective_tensors(model):
        rows.append(tensor_summary(t))
        if any(fnmatchcase(t.name, pattern) for pattern in weights_exclude):
            continue
        positions = (artifacts.sample_positions(tuple(t.value.shape), sample_size, seed)
                     if sample_above is not None and t.value.numel() > sample_above else None)
        if positions is None:
            weights[t.name] = t.value.numpy()
        else:  # only the sample is kept: a pruned model's effective tensor is dropped right away
            weights[t.name] = t.value.reshape(-1)[torch.from_numpy(positions.astype(np.int64))].numpy()
            sampled[t.name] = list(t.value.shape)
    return pd.DataFrame(rows, columns=list(artifacts.SUMMARY_COLUMNS)), weights, sampled


def log_layers(model_run: ModelRun, model: nn.Module, *, eval_set: EvalSet | None = None,
               activations: bool = True, activation_instances: int = ACTIVATION_INSTANCES,
               activation_cap: int = ACTIVATION_CAP, seed: int = 0,
               weights_exclude: Sequence[str] = (), sample_above: int | None = artifacts.SAMPLE_ABOVE,
               sample_size: int = artifacts.SAMPLE_SIZE) -> None:
    """Log the layer summary, effective weights and (with an ``eval_set``) sampled activations.

    Weights of more than ``sample_above`` elements are stored as a fixed sample of
    ``sample_size`` values (see :func:`layer_tables`); ``sample_above=None`` stores all in full.
    """
    summary, weights, sampled = layer_tables(model, weights_exclude, sample_above=sample_above,
                                             sample_size=sample_size, seed=seed)
    acts: dict[str, np.ndarray] | None = None
    metadata: dict[str, str] = {}
    if activations and eval_set is not None:
        indices = activation_indices(len(eval_set), activation_instances, seed)
        acts = capture_activations(model, eval_set, indices, cap=activation_cap, seed=seed)
        metadata = {"activation_seed": str(seed), "activation_cap": str(activation_cap),
                    "activation_instance_ids": ",".join(str(eval_set.instance_ids[i]) for i in indices)}
    artifacts.log_layers(model_run.run_id, summary, weights, acts, metadata=metadata, sampled=sampled,
                         sample_seed=seed, allow_nonfinite=True, client=model_run.client)
