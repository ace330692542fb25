"""Compression operations applied in place: quantization, fine-tuning, BatchNorm calibration.

Training and calibration batches are ``(inputs, labels)`` pairs (inputs as the model takes them:
a tensor, tuple or dict of tensors); the default loss is cross-entropy of the logits.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlflow_cc.errors import OperationError
from mlflow_cc.torch.effective import is_quantized_module, make_pruning_permanent
from mlflow_cc.torch.forward import default_forward, model_device, to_device
from mlflow_cc.torch.pruning import LossFn


def cross_entropy_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Cross-entropy of the model's logits on an ``(inputs, labels)`` batch."""
    inputs, labels = batch
    return F.cross_entropy(default_forward(model, inputs), labels)


def apply_quantization(model: nn.Module, module_types: Sequence[type[nn.Module]] = (nn.Linear,)) -> nn.Module:
    """8-bit dynamic quantization of ``module_types`` in place (pruning masks folded in first).

    ``torch.ao.quantization.quantize_dynamic`` is deprecated in recent torch but works; its
    deprecation warnings are silenced here.
    """
    make_pruning_permanent(model)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model, set(module_types), dtype=torch.qint8, inplace=True)
    if not any(is_quantized_module(m) for m in quantized.modules()):
        names = ", ".join(t.__name__ for t in module_types)
        raise OperationError(f"quantize: the model has no {names} layers to quantize")
    return quantized


def apply_finetuning(model: nn.Module, batches: Iterable[Any], *, epochs: int = 1, lr: float = 1e-3,
                     loss_fn: LossFn = cross_entropy_loss) -> None:
    """Train ``model`` in place with Adam (``lr``) for ``epochs`` passes over ``batches``.

    Pruned weights stay zero: the optimizer updates ``weight_orig`` and the mask is reapplied
    before every forward pass.
    """
    if any(is_quantized_module(m) for m in model.modules()):
        # quantized kernels have no gradients: training would silently leave them as they are
        raise OperationError("finetune: the model has quantized layers; fine-tune before quantizing")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OperationError("finetune: the model has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=lr)
    device = model_device(model)
    model.train()
    try:
        for _ in range(epochs):
            for batch in batches:
                optimizer.zero_grad()
                loss_fn(model, to_device(batch, device)).backward()
                optimizer.step()
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def apply_calibration(model: nn.Module, batches: Iterable[Any]) -> int:
    """Re-estimate every BatchNorm's running mean and variance in place from ``batches`` (a plain
    average over them, labels ignored); returns the number of batches used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise OperationError("calibrate: the model has no BatchNorm layers to calibrate")
    momenta = [m.momentum for m in norms]
    device = model_device(model)
    model.eval()
    seen = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
            m.train()
        with torch.no_grad():
            for batch in batches:
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                default_forward(model, to_device(inputs, device))
                seen += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise OperationError("calibrate: the calibration batches are empty")
    return seen
