"""Weight-only int8 quantization of ``nn.Linear`` layers (activations stay float).

Each weight row (output channel) is stored as int8 with one float32 scale, symmetric:
``w ≈ int8 * scale``, ``scale = max|w_row| / 127``. The forward pass dequantizes the weight and
runs a float matmul: the arithmetic of a weight-only int8 kernel, without its speed (on this
machine torch's ``_weight_int8pack_mm`` CPU kernel was about 25 times slower than the float
matmul; the dequantized matmul is within 20 % of it). So ``size_bytes``/``nonzero_bytes`` fall
to about a quarter; ``latency_ms`` does not.

The module's ``weight()`` returns a per-channel quantized tensor, like torch's dynamically
quantized ``Linear``, so :mod:`mlflow_cc.torch.effective` stores the packed int8 values and
scales under the float layer's names.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from fnmatch import fnmatchcase

import torch
import torch.nn.functional as F
from torch import nn

from mlflow_cc.errors import OperationError
from mlflow_cc.torch.effective import make_pruning_permanent


class WeightOnlyInt8Linear(nn.Module):
    """``nn.Linear`` with an int8 weight and a float32 scale per output channel."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias_value = None if linear.bias is None else nn.Parameter(linear.bias.detach().float().clone(),
                                                                        requires_grad=False)

    def dequantized(self) -> torch.Tensor:
        """The float32 weight the layer computes with."""
        return self.qweight.float() * self.scale[:, None]

    def weight(self) -> torch.Tensor:
        """The weight as a per-channel quantized tensor (int8 values, float scales, zero points 0)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated in torch, still work
            return torch._make_per_channel_quantized_tensor(
                self.qweight, self.scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0)

    def bias(self) -> torch.Tensor | None:
        """The float bias (None without one); a method, as on torch's quantized ``Linear``."""
        return self.bias_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias_value is None else self.bias_value.to(x.dtype)
        return F.linear(x, self.dequantized().to(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


def apply_weight_only_int8(model: nn.Module, exclude_names: Sequence[str] = ()) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by :class:`WeightOnlyInt8Linear`.

    ``exclude_names``: fnmatch patterns of module names kept in float (e.g. ``"lm_head"``, often
    tied to the token embedding). Pruning masks are folded in first. Returns ``model``.
    """
    make_pruning_permanent(model)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not any(fnmatchcase(name, p) for p in exclude_names)]
    if not targets:
        raise OperationError("quantize: the model has no Linear layers to quantize")
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, WeightOnlyInt8Linear(module))
    return model.eval()
