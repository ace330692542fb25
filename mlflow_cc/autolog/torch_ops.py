"""What autologging patches in PyTorch, and how each call is described.

- ``torch.nn.utils.prune``: ``global_unstructured``, ``l1_unstructured``, ``random_unstructured``,
  ``ln_structured``, ``random_structured``, ``custom_from_mask`` (in place: a child of the
  model's current run, operation ``prune``). ``remove`` and ``identity`` are not patched: they
  do not change what the model computes. The calls name modules, not the model: the model is
  the largest ``nn.Module`` holding them among the tracked models and the caller's variables.
- ``torch.ao.quantization.quantize_dynamic`` (and its ``torch.quantization`` alias): operation
  ``quantize``; the returned model is the child (the same object with ``inplace=True``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from torch import nn

from mlflow_cc.autolog.patching import Patch, Plan
from mlflow_cc.autolog.recorder import RECORDER
from mlflow_cc.track.tracking import ParamValue

#: Per-layer pruning functions and the arguments (besides module, name) logged as parameters.
PER_LAYER = {"l1_unstructured": ("amount",), "random_unstructured": ("amount",),
             "ln_structured": ("amount", "n", "dim"), "random_structured": ("amount", "dim"),
             "custom_from_mask": ()}


def patches() -> list[Patch]:
    import torch.ao.quantization  # noqa: F401  (the modules patched below)
    from torch.nn.utils import prune

    out: list[Patch] = [(prune, "global_unstructured", _global_unstructured)]
    out += [(prune, fn, _per_layer(fn)) for fn in PER_LAYER]
    for name in ("torch.ao.quantization", "torch.ao.quantization.quantize", "torch.quantization",
                 "torch.quantization.quantize"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "quantize_dynamic"):
            out.append((module, "quantize_dynamic", _quantize_dynamic))
    return out


def _global_unstructured(args: dict[str, Any]) -> Plan:
    targets = list(args["parameters"])
    args["parameters"] = targets  # an iterator is consumed here: the original gets the list
    method = args["pruning_method"]
    params: dict[str, ParamValue] = {"method": "global_unstructured",
                                     "pruning_method": getattr(method, "__name__", str(method))}
    params.update({k: _scalar(v) for k, v in sorted(args.get("kwargs", {}).items())})
    params["tensors"] = ",".join(sorted({str(name) for _, name in targets}))
    params["targets"] = len(targets)
    if args.get("importance_scores") is not None:
        params["importance_scores"] = "custom"
    return Plan(model=find_model([m for m, _ in targets]), operation="prune", params=params)


def _per_layer(function: str) -> Any:
    def describe(args: dict[str, Any]) -> Plan:
        module, tensor = args["module"], str(args["name"])
        params: dict[str, ParamValue] = {"method": function}
        params.update({k: _scalar(args[k]) for k in PER_LAYER[function]})
        params["tensors"] = tensor
        if args.get("importance_scores") is not None:
            params["importance_scores"] = "custom"
        model = find_model([module])
        path = next((n for n, m in model.named_modules() if m is module), "")
        return Plan(model=model, operation="prune", params=params,
                    coalesce=(function, tuple(sorted(params.items()))),
                    tensor=f"{path}.{tensor}" if path else tensor)
    return describe


def _quantize_dynamic(args: dict[str, Any]) -> Plan:
    import torch

    dtype = args.get("dtype", torch.qint8)
    params: dict[str, ParamValue] = {"method": "dynamic"}
    if dtype == torch.qint8:
        params["bits"] = 8
    else:
        params["dtype"] = str(dtype).removeprefix("torch.")
    spec = args.get("qconfig_spec")
    keys: Iterable[Any] = spec.keys() if isinstance(spec, dict) else (spec or ())
    names = sorted(k if isinstance(k, str) else getattr(k, "__name__", str(k)) for k in keys)
    params["modules"] = ",".join(names)[:500] if names else "default"
    return Plan(model=args["model"], operation="quantize", params=params, output=lambda result: result)


def find_model(modules: list[nn.Module]) -> nn.Module:
    """The model ``modules`` belong to: the largest tracked model or caller variable holding them all.

    A pruning call names layers (``(model.fc1, "weight")``), not the model; a plain script keeps
    its model in a variable of some calling frame.
    """
    wanted = {id(m) for m in modules}
    candidates: dict[int, nn.Module] = {id(m): m for m, _ in RECORDER.tracked()}
    frame = sys._getframe(1)
    depth = 0
    while frame is not None and depth < 30:
        for value in list(frame.f_locals.values()):
            if isinstance(value, nn.Module):
                candidates.setdefault(id(value), value)
        frame = frame.f_back
        depth += 1
    best: nn.Module | None = None
    best_size = -1
    for candidate in candidates.values():
        inside = {id(m) for m in candidate.modules()}
        if wanted <= inside and len(inside) > best_size:
            best, best_size = candidate, len(inside)
    return best if best is not None else modules[0]


def _scalar(value: Any) -> ParamValue:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)[:500]
