"""The effective tensors of a model: what it computes with, whatever its storage.

- Pruned modules (``torch.nn.utils.prune``) keep ``weight_orig`` and ``weight_mask``; the
  effective tensor is ``weight`` = orig * mask.
- Dynamically quantized modules (``quantize_dynamic``) hold packed int8 weights; the effective
  tensor is ``weight().dequantize()``, under the float module's names (``fc.weight``), so a
  quantized model lines up with its float parent.
- Float buffers that change what the model computes (BatchNorm running statistics) are included,
  marked as buffers; integer buffers (counters, position ids) are not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


@dataclass
class EffectiveTensor:
    """One tensor of a model as it is used in the forward pass."""

    module: str  # module name in ``named_modules`` ("" for the root)
    tensor: str  # attribute name within the module ("weight", "bias", "running_mean")
    module_type: str  # class name of the module ("Linear", "LayerNorm")
    value: torch.Tensor  # float32, CPU, detached; masks applied, dequantized
    stored: dict[str, torch.Tensor]  # what serialization stores (int8 + scales when quantized)
    quantized: bool
    dtype: str  # storage dtype ("float32", "qint8")
    is_parameter: bool  # False for buffers

    @property
    def name(self) -> str:
        """Full name, as in the float model's ``state_dict`` ("encoder.layer.0.output.dense.weight")."""
        return f"{self.module}.{self.tensor}" if self.module else self.tensor


def is_quantized_module(module: nn.Module) -> bool:
    """True for modules that expose packed weights through a ``weight()`` method."""
    weight = getattr(type(module), "weight", None)
    return callable(weight) and not isinstance(weight, property) and "quantized" in type(module).__module__


def effective_tensors(model: nn.Module, *, buffers: bool = True) -> Iterator[EffectiveTensor]:
    """Yield every parameter (and float buffer) of ``model`` as an :class:`EffectiveTensor`.

    Shared (tied) tensors are yielded once, under their first name.
    """
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        module_type = type(module).__name__
        if is_quantized_module(module):
            yield from _quantized(module_name, module, module_type)
            continue
        pruned = {name[: -len("_orig")] for name in module._parameters if name.endswith("_orig")}
        for name, param in module._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            tensor_name = name[: -len("_orig")] if name.endswith("_orig") and name[: -len("_orig")] in pruned else name
            value = param.detach()
            if tensor_name in pruned:
                value = value * getattr(module, tensor_name + "_mask")
            value = value.to("cpu", torch.float32) if value.is_floating_point() else value.cpu()
            yield EffectiveTensor(module_name, tensor_name, module_type, value, {"": value}, False,
                                  _dtype_name(param.dtype), True)
        if not buffers:
            continue
        for name, buf in module._buffers.items():
            if (buf is None or not buf.is_floating_point() or id(buf) in seen
                    or name in module._non_persistent_buffers_set
                    or (name.endswith("_mask") and name[: -len("_mask")] in pruned)):
                continue
            seen.add(id(buf))
            value = buf.detach().to("cpu", torch.float32)
            yield EffectiveTensor(module_name, name, module_type, value, {"": value}, False,
                                  _dtype_name(buf.dtype), False)


def _quantized(module_name: str, module: nn.Module, module_type: str) -> Iterator[EffectiveTensor]:
    weight = module.weight()
    if weight.is_quantized:
        stored = {"": weight.int_repr()}
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            stored["scale"] = weight.q_per_channel_scales().float()
            stored["zero_point"] = weight.q_per_channel_zero_points().to(torch.int32)
        else:
            stored["scale"] = torch.tensor([weight.q_scale()], dtype=torch.float32)
            stored["zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int32)
        value = weight.dequantize().float()
        dtype = str(weight.dtype).replace("torch.", "")
    else:  # float16 dynamic quantization keeps a float weight
        value = weight.detach().float()
        stored = {"": weight.detach()}
        dtype = _dtype_name(weight.dtype)
    yield EffectiveTensor(module_name, "weight", module_type, value, stored, True, dtype, True)
    bias_fn = getattr(module, "bias", None)
    bias = bias_fn() if callable(bias_fn) else None
    if bias is not None:
        bias_value = bias.detach().float()
        yield EffectiveTensor(module_name, "bias", module_type, bias_value, {"": bias.detach()}, False,
                              _dtype_name(bias.dtype), True)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def refresh_pruned_weights(model: nn.Module) -> None:
    """Recompute each pruned module's ``weight`` attribute (orig * mask) outside autograd.

    Same values as the pruning hook computes before every forward pass; this makes the attribute a
    leaf tensor, which ``copy.deepcopy`` needs, and brings it up to date after training steps.
    """
    with torch.no_grad():
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, torch_prune.BasePruningMethod):
                    setattr(module, hook._tensor_name, hook.apply_mask(module))


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that works for pruned modules too; the original is unchanged."""
    refresh_pruned_weights(model)
    return copy.deepcopy(model)


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (in place): plain parameters, zeros kept."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


def has_pruning(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries ``torch.nn.utils.prune`` masks."""
    return any(isinstance(hook, torch_prune.BasePruningMethod)
               for module in model.modules() for hook in module._forward_pre_hooks.values())


def folded(model: nn.Module) -> nn.Module:
    """``model`` as it would be deployed: a copy with pruning masks folded into the weights (so
    a forward pass no longer multiplies weight by mask), or ``model`` itself if it has none."""
    return make_pruning_permanent(copy_model(model)) if has_pruning(model) else model
