"""Unstructured pruning in place: which tensors, which scores, which masks.

Masks are attached with ``torch.nn.utils.prune`` (``weight_orig`` * ``weight_mask``), so
fine-tuning keeps pruned weights at zero and ``torch.nn.utils.prune.remove`` folds them. The
threshold is found with ``numpy.partition`` (linear time) rather than torch's ``topk``, which is
several times slower on tensors of millions of elements; exactly ``round(sparsity * n)`` elements
are pruned, ties at the threshold broken by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from mlflow_cc.errors import OperationError
from mlflow_cc.torch.forward import model_device, to_device

#: Normalization layers of torch; ``exclude_types=["norm"]`` also matches any class whose name
#: ends with "Norm" (HuggingFace's T5LayerNorm, LlamaRMSNorm, ...).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm, nn.RMSNorm,
)
PRUNE_METHODS = ("global_magnitude", "local_magnitude", "gradient", "random", "2:4")

#: ``loss_fn(model, batch) -> scalar loss``.
LossFn = Callable[[nn.Module, Any], torch.Tensor]
#: ``(full parameter name, module, tensor name)``.
Target = tuple[str, nn.Module, str]


def prunable_tensors(model: nn.Module, *, exclude_types: Sequence[type[nn.Module] | str] = (),
                     exclude_names: Sequence[str] = (), tensors: Sequence[str] | None = None) -> list[Target]:
    """Every float parameter pruning would touch, as ``(full_name, module, tensor_name)``.

    ``exclude_types``: module classes or class names; ``"norm"`` means every normalization
    layer. ``exclude_names``: fnmatch patterns over full parameter names ("embeddings.*").
    ``tensors``: parameter names to consider ("weight"); default all.
    """
    out: list[Target] = []
    for module_name, module in model.named_modules():
        if excluded_type(module, exclude_types):
            continue
        for param_name, param in module._parameters.items():
            if param is None or not param.is_floating_point() or param.numel() == 0:
                continue
            tensor = param_name.removesuffix("_orig")
            full = f"{module_name}.{tensor}" if module_name else tensor
            if tensors is not None and tensor not in tensors:
                continue
            if any(fnmatchcase(full, pattern) for pattern in exclude_names):
                continue
            out.append((full, module, tensor))
    return out


def excluded_type(module: nn.Module, exclude_types: Sequence[type[nn.Module] | str]) -> bool:
    """Whether ``module`` matches one of ``exclude_types`` (a class, a class name or "norm")."""
    for spec in exclude_types:
        if spec == "norm":
            if isinstance(module, NORM_TYPES) or type(module).__name__.lower().endswith("norm"):
                return True
        elif isinstance(spec, str):
            if any(cls.__name__ == spec for cls in type(module).__mro__):
                return True
        elif isinstance(module, spec):
            return True
    return False


def apply_pruning(model: nn.Module, sparsity: float, method: str = "global_magnitude", *,
                  targets: list[Target], batches: Iterable[Any] | None = None,
                  loss_fn: LossFn | None = None, seed: int = 0) -> None:
    """Prune ``targets`` of ``model`` in place to ``sparsity`` (a fraction of their elements).

    ``global_magnitude``: smallest |w| over all targets together; ``local_magnitude``: the
    smallest ``sparsity`` of each tensor; ``gradient``: smallest |w * dL/dw| summed over
    ``batches``, global; ``random``: a seeded random ``sparsity`` of each tensor; ``2:4``
    (semi-structured): in every group of 4 consecutive weights along a row, the 2 of smallest
    |w| (``sparsity`` must be 0.5; every target needs at least 2 dimensions and rows of a
    multiple of 4: exclude the others, e.g. normalization layers).
    """
    if not 0.0 <= sparsity <= 1.0:
        raise OperationError(f"prune: sparsity must be in [0, 1], not {sparsity}")
    if method not in PRUNE_METHODS:
        raise OperationError(f"prune: method must be one of {PRUNE_METHODS}, not {method!r}")
    if not targets:
        raise OperationError("prune: no parameters left to prune after the exclusions")
    with torch.no_grad():
        weights = [getattr(module, tensor).detach() for _, module, tensor in targets]
    if method == "2:4":
        if sparsity != 0.5:
            raise OperationError(f"prune: 2:4 pruning removes half the weights; sparsity must be 0.5, not {sparsity}")
        for (full, _, _), w in zip(targets, weights):
            if w.dim() < 2 or w.shape[-1] % 4:
                raise OperationError(f"prune: 2:4 pruning needs rows of a multiple of 4 values; {full} has "
                                     f"shape {list(w.shape)} (exclude it)")
        for (_, module, tensor), w in zip(targets, weights):
            set_mask(module, tensor, two_of_four_mask(w))
        return
    if method == "gradient":
        if batches is None or loss_fn is None:
            raise OperationError("prune: method 'gradient' needs calibration batches and a loss")
        scores = gradient_scores(model, targets, batches, loss_fn)
    elif method == "random":
        gen = torch.Generator().manual_seed(seed)
        scores = [torch.rand(w.shape, generator=gen) for w in weights]
    else:
        scores = [w.abs() for w in weights]
    if method in ("global_magnitude", "gradient"):
        masks = keep_masks(scores, sparsity)
    else:
        masks = [keep_masks([s], sparsity)[0] for s in scores]
    for (_, module, tensor), mask in zip(targets, masks):
        set_mask(module, tensor, mask)


def keep_masks(scores: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Masks (1 = keep) that zero exactly ``round(sparsity * n)`` of the lowest scores over all
    ``scores`` together (``n`` = their total size); ties broken by position."""
    flat = torch.cat([s.detach().reshape(-1).float().cpu() for s in scores]).numpy()
    k = round(sparsity * flat.size)
    keep = np.ones(flat.size, dtype=bool)
    if k >= flat.size:
        keep[:] = False
    elif k > 0:
        threshold = np.partition(flat, k - 1)[k - 1]
        keep = flat > threshold
        ties = np.flatnonzero(flat == threshold)
        n_pruned = flat.size - int(keep.sum())
        if n_pruned > k:  # more ties at the threshold than needed: keep the last ones
            keep[ties[ties.size - (n_pruned - k):]] = True
    out, start = [], 0
    for s in scores:
        part = keep[start:start + s.numel()].reshape(s.shape)
        out.append(torch.from_numpy(part).to(device=s.device, dtype=torch.float32))
        start += s.numel()
    return out


def two_of_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Mask (1 = keep) keeping the 2 largest |w| of every 4 consecutive values of each row
    (ties broken by position, the earlier kept)."""
    groups = weight.detach().abs().float().reshape(-1, 4)
    keep = torch.zeros_like(groups)
    keep.scatter_(1, torch.topk(groups, 2, dim=1, sorted=False).indices, 1.0)
    return keep.reshape(weight.shape)


def set_mask(module: nn.Module, tensor: str, mask: torch.Tensor) -> None:
    """Attach ``mask`` to ``module.<tensor>``; an already pruned tensor keeps its old zeros too."""
    existing = getattr(module, tensor + "_mask", None)
    if existing is None:
        torch_prune.custom_from_mask(module, tensor, mask.to(getattr(module, tensor).dtype))
        return
    with torch.no_grad():
        existing.mul_(mask.to(existing.dtype))
        setattr(module, tensor, getattr(module, tensor + "_orig") * existing)


def gradient_scores(model: nn.Module, targets: list[Target], batches: Iterable[Any],
                    loss_fn: LossFn) -> list[torch.Tensor]:
    """First-order importance |w * dL/dw| of each target, summed over ``batches`` (eval mode)."""
    params = [getattr(m, t + "_orig") if hasattr(m, t + "_orig") else getattr(m, t) for _, m, t in targets]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    device = model_device(model)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in batches:
            loss_fn(model, to_device(batch, device)).backward()
            seen += 1
        if seen == 0:
            raise OperationError("prune: the calibration batches are empty")
        return [(getattr(m, t).detach() * (p.grad if p.grad is not None else torch.zeros_like(p))).abs()
                for (_, m, t), p in zip(targets, params)]
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)
