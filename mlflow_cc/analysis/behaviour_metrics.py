"""Per-instance behaviour metrics of a model against the base: the built-ins (correct, flip, confidence, logit MSE, KL) and the registry users add their own to.

Classification metrics get :class:`ModelArrays`; metrics of the other outputs kinds
(``kind="generation"``, ``"regression"``, ``"embedding"``; built-ins in
:mod:`.behaviour_kinds`) get :class:`~mlflow_cc.analysis.behaviour_kinds.KindArrays` and live in a
registry of their own per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Separator between metric and model key in column names: ``correct|<run id>``.
SEP = "|"


@dataclass(frozen=True)
class ModelArrays:
    """One model's outputs aligned to the base's instances (rows missing in the model are NaN).

    ``valid`` marks rows the model has; ``labels`` are the base's true labels (-1 unknown).
    """

    labels: np.ndarray  # (N,) int64
    predictions: np.ndarray  # (N,) float64, NaN where not valid
    logits: np.ndarray  # (N, K) float32, NaN rows where not valid
    probs: np.ndarray  # (N, K) softmax of logits
    log_probs: np.ndarray  # (N, K) log-softmax of logits
    valid: np.ndarray  # (N,) bool


MetricFn = Callable[[ModelArrays, ModelArrays], Any]


@dataclass(frozen=True)
class BehaviourMetric:
    """A comparison metric: ``fn(base, model)`` returns (N,) values, or one float if not per instance."""

    name: str
    fn: MetricFn
    per_instance: bool = True
    higher_is_better: bool = True
    description: str = ""
    kind: str = "classification"


_REGISTRY: dict[str, BehaviourMetric] = {}
#: Metrics of the other outputs kinds: kind -> name -> metric.
_KIND_REGISTRY: dict[str, dict[str, BehaviourMetric]] = {"generation": {}, "regression": {}, "embedding": {}}


def register_metric(name: str, fn: MetricFn, *, per_instance: bool = True, higher_is_better: bool = True,
                    description: str = "", replace: bool = False, kind: str = "classification") -> BehaviourMetric:
    """Add a comparison metric that every later :func:`compare_behaviours` computes.

    ``fn(base, model)`` gets two :class:`ModelArrays` aligned by instance. Per-instance
    metrics return an (N,) float array (NaN = not defined for that instance); the
    per-class and per-subgroup values are their means. Metrics with
    ``per_instance=False`` return one float for the instances they are given (e.g. a
    macro F1); they are computed per group by calling ``fn`` on each group's rows.
    ``kind``: the outputs kind the metric compares (default classification); a metric of
    another kind gets two :class:`~mlflow_cc.analysis.behaviour_kinds.KindArrays`.
    """
    if not name or SEP in name:
        raise ValueError(f"metric name must be non-empty and not contain {SEP!r}: {name!r}")
    registry = _registry(kind)
    if name in registry and not replace:
        raise ValueError(f"metric {name!r} is already registered (pass replace=True)")
    metric = BehaviourMetric(name, fn, per_instance, higher_is_better, description, kind)
    registry[name] = metric
    return metric


def _registry(kind: str) -> dict[str, BehaviourMetric]:
    if kind == "classification":
        return _REGISTRY
    if kind not in _KIND_REGISTRY:
        raise ValueError(f"unknown outputs kind {kind!r}: use classification, {', '.join(_KIND_REGISTRY)}")
    return _KIND_REGISTRY[kind]


def unregister_metric(name: str, kind: str = "classification") -> None:
    """Remove a registered metric (built-ins included)."""
    _registry(kind).pop(name, None)


def registered_metrics(kind: str = "classification") -> dict[str, BehaviourMetric]:
    """The registered metrics of an outputs kind by name, built-ins first."""
    return dict(_registry(kind))


def _with_label(model: ModelArrays) -> np.ndarray:
    return (model.labels >= 0) & model.valid


def _correct(base: ModelArrays, model: ModelArrays) -> np.ndarray:
    out = (model.predictions == model.labels).astype(np.float64)
    return np.where(_with_label(model), out, np.nan)


def _flip(base: ModelArrays, model: ModelArrays) -> np.ndarray:
    return np.where(model.valid & base.valid, (model.predictions != base.predictions).astype(np.float64), np.nan)


def _confidence(base: ModelArrays, model: ModelArrays) -> np.ndarray:
    k = model.probs.shape[1]
    ok = _with_label(model) & (model.labels < k)
    idx = np.clip(model.labels, 0, max(k - 1, 0))
    picked = np.take_along_axis(model.probs, idx[:, None], axis=1)[:, 0] if k else np.full(len(idx), np.nan)
    return np.where(ok, picked, np.nan)


def _logit_mse(base: ModelArrays, model: ModelArrays) -> np.ndarray:
    if base.logits.shape[1] != model.logits.shape[1]:
        return np.full(len(model.valid), np.nan)  # different class sets: not comparable
    return np.mean((model.logits - base.logits) ** 2, axis=1)


def _kl(base: ModelArrays, model: ModelArrays) -> np.ndarray:
    if base.logits.shape[1] != model.logits.shape[1]:
        return np.full(len(model.valid), np.nan)
    return np.sum(base.probs * (base.log_probs - model.log_probs), axis=1)


BUILTIN_METRICS = ("correct", "flip", "confidence", "logit_mse", "kl")


register_metric("correct", _correct, higher_is_better=True, description="prediction equals the true label")
register_metric("flip", _flip, higher_is_better=False, description="prediction differs from the base's")
register_metric("confidence", _confidence, higher_is_better=True,
                description="softmax probability of the true label")
register_metric("logit_mse", _logit_mse, higher_is_better=False,
                description="mean squared logit difference to the base")
register_metric("kl", _kl, higher_is_better=False, description="KL(base softmax || model softmax), nats")
