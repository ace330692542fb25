"""Compression helpers: apply an operation to a copy of a model and log it as a derived model.

Each helper takes ``(model, parent, ...)`` — ``parent`` is the parent model's
:class:`~mlflow_cc.track.tracking.ModelRun` or run id — and returns ``(new_model, model_run)``:

- :func:`prune`: global or per-layer magnitude, gradient (|w * dL/dw|) or random pruning,
  excluding module types (``"norm"`` for every normalization layer) and name patterns;
- :func:`quantize`: 8-bit dynamic quantization of ``nn.Linear`` layers;
- :func:`finetune`: k epochs of training (pruning masks stay applied);
- :func:`calibrate`: re-estimate BatchNorm statistics on calibration batches.

The user's model is never changed: each helper works on a deep copy. The derived run is created
first, so a failure inside (a bad argument, a model that cannot be quantized) leaves that run
FAILED with the reason and re-raises. With a :class:`~mlflow_cc.torch.capture.Capture` the new
model's efficiency, user metrics, outputs and layers are logged too.

Training and calibration batches are ``(inputs, labels)`` pairs; pass a list or a ``DataLoader``
(iterated once per epoch; a one-shot iterator is turned into a list).
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from typing import Any

from torch import nn

from mlflow_cc.errors import OperationError
from mlflow_cc.torch.capture import Capture
from mlflow_cc.torch.effective import copy_model, refresh_pruned_weights
from mlflow_cc.torch.operations import (
    apply_calibration,
    apply_finetuning,
    apply_quantization,
    cross_entropy_loss,
)
from mlflow_cc.torch.pruning import LossFn, apply_pruning, prunable_tensors
from mlflow_cc.torch.quantized_linear import apply_weight_only_int8
from mlflow_cc.track.tracking import ModelRun, ParamValue, derive_model, log_base_model

Parent = str | ModelRun


def log_base(model: nn.Module, name: str, *, experiment: str | None = None, capture: Capture | None = None,
             params: Mapping[str, Any] | None = None, tracking_uri: str | None = None) -> ModelRun:
    """Register ``model`` as a base (root) model, logging ``capture`` on it; returns its finished run."""
    with log_base_model(name, experiment=experiment, params=params, tracking_uri=tracking_uri) as run:
        if capture is not None:
            capture.log(run, model)
    return run


def derive(model: nn.Module, parent: Parent, operation: str, params: Mapping[str, ParamValue],
           apply: Callable[[nn.Module], nn.Module | None], *, capture: Capture | None = None,
           name: str | None = None, inputs: Mapping[str, Parent] | None = None,
           tracking_uri: str | None = None) -> tuple[nn.Module, ModelRun]:
    """Log a model derived from ``parent`` by ``operation``: ``apply`` changes a copy of ``model``.

    ``apply(copy)`` modifies the copy in place or returns a replacement. The run is created before
    the operation runs, so a failure marks it FAILED (with the reason) and re-raises.
    """
    with derive_model(parent, operation, params, name=name, inputs=inputs, tracking_uri=tracking_uri) as run:
        new = copy_model(model)
        result = apply(new)
        new = result if result is not None else new
        refresh_pruned_weights(new)
        if capture is not None:
            capture.log(run, new)
    return new, run


def prune(model: nn.Module, parent: Parent, *, sparsity: float, method: str = "global_magnitude",
          exclude_types: Sequence[type[nn.Module] | str] = (), exclude_names: Sequence[str] = (),
          tensors: Sequence[str] | None = None, batches: Iterable[Any] | None = None,
          loss_fn: LossFn = cross_entropy_loss, seed: int = 0, capture: Capture | None = None,
          name: str | None = None, tracking_uri: str | None = None) -> tuple[nn.Module, ModelRun]:
    """Prune a copy of ``model`` to ``sparsity`` and log it as operation ``prune``.

    ``method``: "global_magnitude", "local_magnitude" (per layer), "gradient" (needs ``batches``)
    or "random" (``seed``); see :func:`mlflow_cc.torch.pruning.apply_pruning`. ``exclude_types``
    (classes, class names, or "norm") and ``exclude_names`` (fnmatch patterns) leave parameters
    untouched; ``tensors`` limits pruning to parameter names such as ``["weight"]``. Logged
    parameters: ``method``, ``sparsity``, ``exclude`` (the exclusions, or "none"), and
    ``tensors``/``batches``/``seed`` where they apply.
    """
    batch_list = _reiterable(batches) if batches is not None else None
    params: dict[str, ParamValue] = {"method": method, "sparsity": float(sparsity),
                                     "exclude": _describe_exclusions(exclude_types, exclude_names)}
    if tensors is not None:
        params["tensors"] = ",".join(tensors)
    if method == "gradient":
        params["batches"] = len(batch_list) if batch_list is not None else 0
    if method == "random":
        params["seed"] = seed

    def apply(copy: nn.Module) -> None:
        targets = prunable_tensors(copy, exclude_types=exclude_types, exclude_names=exclude_names, tensors=tensors)
        apply_pruning(copy, sparsity, method, targets=targets, batches=batch_list, loss_fn=loss_fn, seed=seed)

    return derive(model, parent, "prune", params, apply, capture=capture, name=name, tracking_uri=tracking_uri)


def quantize(model: nn.Module, parent: Parent, *, module_types: Sequence[type[nn.Module]] = (nn.Linear,),
             method: str = "dynamic", exclude_names: Sequence[str] = (), capture: Capture | None = None,
             name: str | None = None, tracking_uri: str | None = None) -> tuple[nn.Module, ModelRun]:
    """Quantize a copy of ``model`` to 8 bits and log operation ``quantize`` with ``method``,
    ``bits=8``, ``modules`` (the quantized layer types).

    ``method``: "dynamic" (int8 weights and activations quantized on the fly, CPU; torch's
    ``quantize_dynamic``) or "weight_only" (int8 weights, float activations:
    :mod:`mlflow_cc.torch.quantized_linear`; ``nn.Linear`` only, ``exclude_names`` patterns of
    module names kept in float, logged as ``exclude``).
    """
    if method not in ("dynamic", "weight_only"):
        raise OperationError(f"quantize: method must be 'dynamic' or 'weight_only', not {method!r}")
    params: dict[str, ParamValue] = {"method": method, "bits": 8,
                                     "modules": ",".join(t.__name__ for t in module_types)}
    if method == "weight_only":
        params["modules"] = "Linear"
        if exclude_names:
            params["exclude"] = ",".join(exclude_names)
        return derive(model, parent, "quantize", params, lambda m: apply_weight_only_int8(m, exclude_names),
                      capture=capture, name=name, tracking_uri=tracking_uri)
    return derive(model, parent, "quantize", params, lambda m: apply_quantization(m, module_types),
                  capture=capture, name=name, tracking_uri=tracking_uri)


def finetune(model: nn.Module, parent: Parent, *, batches: Iterable[Any], epochs: int = 1, lr: float = 1e-3,
             loss_fn: LossFn = cross_entropy_loss, capture: Capture | None = None, name: str | None = None,
             tracking_uri: str | None = None) -> tuple[nn.Module, ModelRun]:
    """Fine-tune a copy of ``model`` with Adam for ``epochs`` and log operation ``finetune``
    (``epochs``, ``lr``, ``optimizer``). Pruned weights stay zero."""
    batch_list = _reiterable(batches)
    params: dict[str, ParamValue] = {"epochs": int(epochs), "lr": float(lr), "optimizer": "adam"}

    def apply(copy: nn.Module) -> None:
        apply_finetuning(copy, batch_list, epochs=epochs, lr=lr, loss_fn=loss_fn)

    return derive(model, parent, "finetune", params, apply, capture=capture, name=name, tracking_uri=tracking_uri)


def calibrate(model: nn.Module, parent: Parent, *, batches: Iterable[Any], capture: Capture | None = None,
              name: str | None = None, tracking_uri: str | None = None) -> tuple[nn.Module, ModelRun]:
    """Re-estimate the BatchNorm statistics of a copy of ``model`` on ``batches`` and log operation
    ``calibrate`` (``method="batchnorm"``, ``batches``)."""
    batch_list = _reiterable(batches)
    params: dict[str, ParamValue] = {"method": "batchnorm", "batches": len(batch_list)}

    def apply(copy: nn.Module) -> None:
        apply_calibration(copy, batch_list)

    return derive(model, parent, "calibrate", params, apply, capture=capture, name=name, tracking_uri=tracking_uri)


def _describe_exclusions(types: Sequence[type[nn.Module] | str], names: Sequence[str]) -> str:
    parts = [t if isinstance(t, str) else t.__name__ for t in types] + list(names)
    return ",".join(parts) if parts else "none"


def _reiterable(batches: Iterable[Any]) -> Collection[Any]:
    """Batches that can be counted (for the logged parameters) and replayed every epoch."""
    if isinstance(batches, Sized) and not isinstance(batches, Iterator):
        return batches  # type: ignore[return-value]
    return list(batches)
