"""How the helpers call a model: tensors, tuples or dicts of tensors, batched along dim 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

#: A model input: a tensor, a tuple of tensors (positional arguments) or a mapping
#: (keyword arguments, as a HuggingFace tokenizer returns), each batched along dim 0.
Inputs = torch.Tensor | tuple[torch.Tensor, ...] | Mapping[str, torch.Tensor]
#: ``forward(model, batch) -> output``; the default calls the model and takes ``.logits``
#: from HuggingFace outputs.
Forward = Callable[[nn.Module, Any], Any]


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` with ``inputs``: mapping as keywords, tuple as positional, else one argument."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def output_tensor(output: Any) -> torch.Tensor:
    """The main tensor of a model output: itself, ``.logits``, ``.last_hidden_state`` or the first element."""
    if isinstance(output, torch.Tensor):
        return output
    for attr in ("logits", "last_hidden_state"):
        value = getattr(output, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, Mapping):
        for value in output.values():
            if isinstance(value, torch.Tensor):
                return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find a tensor in a model output of type {type(output).__name__}")


def default_forward(model: nn.Module, batch: Any) -> torch.Tensor:
    """Call the model and return its main output tensor (logits for a classifier)."""
    return output_tensor(call_model(model, batch))


def num_instances(inputs: Inputs) -> int:
    """Length of the batch dimension."""
    if isinstance(inputs, Mapping):
        return len(next(iter(inputs.values())))
    if isinstance(inputs, tuple):
        return len(inputs[0])
    return len(inputs)


def take(inputs: Inputs, index: slice | torch.Tensor) -> Inputs:
    """Rows ``index`` of every tensor in ``inputs``."""
    if isinstance(inputs, Mapping):
        return {k: v[index] for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(v[index] for v in inputs)
    return inputs[index]


def batches(inputs: Inputs, batch_size: int) -> Iterator[Inputs]:
    """Consecutive batches of at most ``batch_size`` instances."""
    n = num_instances(inputs)
    for start in range(0, n, batch_size):
        yield take(inputs, slice(start, start + batch_size))


def to_device(inputs: Any, device: torch.device) -> Any:
    """Move a tensor, tuple or mapping of tensors to ``device``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, Mapping):
        return {k: to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_device(v, device) for v in inputs)
    return inputs


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none, e.g. quantized)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
