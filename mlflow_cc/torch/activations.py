"""Sampled activations: each leaf module's output on a fixed sample of the evaluation set.

The sample is ``count`` instances drawn by ``seed`` (the same ids for every model of an
experiment). Each module's output is flattened and, when longer than ``cap`` values (default
:data:`ACTIVATION_CAP` = 4,096), sampled at positions drawn with a seed derived from the module
name, so every model samples the same positions.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from mlflow_cc.torch.effective import is_quantized_module
from mlflow_cc.torch.evalset import EvalSet
from mlflow_cc.torch.forward import model_device, output_tensor, take, to_device

#: Values kept per module from one activation sample (float32: 16 KiB per module).
ACTIVATION_CAP = 4096
#: Instances in the activation sample.
ACTIVATION_INSTANCES = 32
#: Containers hooked besides the leaves, by class-name suffix: the blocks of a transformer
#: (``LlamaDecoderLayer``, ``LlamaAttention``, ``LlamaMLP``, ...), whose outputs are the residual
#: stream's increments and states. Normalization layers (``LlamaRMSNorm``) are leaves.
BLOCK_SUFFIXES = ("DecoderLayer", "Attention", "MLP")
#: Leaf modules whose output is their input at evaluation time: not hooked.
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


def activation_indices(n: int, count: int, seed: int) -> np.ndarray:
    """Sorted indices of the activation sample: ``count`` of ``n`` instances drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def sample_positions(module_name: str, numel: int, cap: int, seed: int) -> np.ndarray | None:
    """Positions kept from a module's flattened output, or None to keep all (``numel <= cap``).

    Drawn with a seed from ``seed`` and the module name, so equal names and sizes sample equally.
    """
    if numel <= cap:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(module_name.encode())])
    return np.sort(rng.choice(numel, size=cap, replace=False))


def hooked_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are captured: leaves (a quantized module counts as a leaf),
    minus dropout and identity, and transformer blocks (:data:`BLOCK_SUFFIXES`)."""
    out: list[tuple[str, nn.Module]] = []
    inside_quantized: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(q + ".") for q in inside_quantized):
            continue
        if is_quantized_module(module):
            inside_quantized.append(name)
        elif type(module).__name__.endswith(BLOCK_SUFFIXES):
            pass
        elif next(module.children(), None) is not None or isinstance(module, _PASS_THROUGH):
            continue
        out.append((name, module))
    return out


def capture_activations(model: nn.Module, eval_set: EvalSet, indices: np.ndarray, *,
                        cap: int = ACTIVATION_CAP, seed: int = 0) -> dict[str, np.ndarray]:
    """Each hooked module's output on the instances ``indices``, flattened, capped at ``cap`` values."""
    captured: dict[str, np.ndarray] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name in captured:  # a module called twice: keep its first call
                return
            try:
                tensor = output_tensor(output)
            except TypeError:
                return
            if not tensor.is_floating_point():
                return
            flat = tensor.detach().float().reshape(-1).cpu().numpy()
            positions = sample_positions(name, flat.size, cap, seed)
            captured[name] = flat if positions is None else flat[positions]
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in hooked_modules(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = take(eval_set.inputs, torch.as_tensor(indices))
            eval_set.forward(model, to_device(batch, model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return captured
