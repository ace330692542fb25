"""Digits compression study: the paper's first study task in miniature.

A small CNN on scikit-learn's digits and 25 derived models: 8-bit quantization; global
magnitude and gradient pruning at 50-95 % sparsity; fine-tuning after pruning; BatchNorm
calibration; combined recipes (prune -> quantize, prune -> calibrate -> quantize,
prune -> fine-tune -> quantize); per-layer magnitude and random pruning for contrast.
Outputs, layers and activations are logged for every model; the 8x8 thumbnails once.
"""

from __future__ import annotations

from typing import Any

import torch

import mlflow_cc as cc
from mlflow_cc.studies.digits_data import DigitsCNN, load_digits_split, train
from mlflow_cc.studies.digits_eval import (
    accuracy_metric,
    digits_eval_set,
    training_batches,
)
from mlflow_cc.torch import Capture, calibrate, finetune, log_base, prune, quantize

EXPERIMENT = "digits-compression"
#: Pruning touches conv and linear weights; normalization layers and biases are kept.
PRUNE_SCOPE: dict[str, Any] = {"exclude_types": ["norm"], "tensors": ["weight"]}


def build(tracking_uri: str | None = None, *, experiment: str = EXPERIMENT,
          progress: bool = False) -> dict[str, float]:
    """Train the base CNN and log it with all derived models; returns {recipe: test accuracy}."""
    torch.manual_seed(0)
    split = load_digits_split(seed=0)
    model = train(DigitsCNN(), split.x_train, split.y_train, epochs=8, seed=0)
    eval_set = digits_eval_set(split)
    capture = Capture(eval_set, metrics=accuracy_metric(eval_set.labels), sample_input=split.x_test[:64],
                      progress=progress)
    cc.set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment=experiment,
                       tracking_uri=tracking_uri)
    calib = training_batches(split, limit=8, seed=1)  # calibration: 512 training images
    train_batches = training_batches(split, seed=2)
    results: dict[str, float] = {}
    Derived = tuple[torch.nn.Module, cc.ModelRun]

    def record(recipe: str, derived: Derived) -> Derived:
        results[recipe] = derived[1].client.get_run(derived[1].run_id).data.metrics["accuracy"]
        return derived

    base = log_base(model, "digits-cnn", experiment=experiment, capture=capture, tracking_uri=tracking_uri,
                    params={"epochs": 8, "channels": 16})
    record("base", (model, base))
    record("quantize", quantize(model, base, capture=capture))
    pruned: dict[str, Derived] = {}
    for method in ("global_magnitude", "gradient"):
        for sparsity in (0.5, 0.7, 0.9, 0.95):
            recipe = f"prune {method} {sparsity:.0%}"
            pruned[recipe] = record(recipe, prune(
                model, base, sparsity=sparsity, method=method, batches=calib if method == "gradient" else None,
                capture=capture, **PRUNE_SCOPE))
    for method in ("global_magnitude", "gradient"):
        for sparsity in (0.9, 0.95):
            recipe = f"prune {method} {sparsity:.0%}"
            tuned = record(recipe + " > finetune",
                           finetune(*pruned[recipe], batches=train_batches, epochs=2, lr=1e-3, capture=capture))
            if (method, sparsity) == ("global_magnitude", 0.95):
                record(recipe + " > finetune > quantize", quantize(*tuned, capture=capture))
    for sparsity in (0.5, 0.7, 0.9):
        recipe = f"prune global_magnitude {sparsity:.0%}"
        record(recipe + " > quantize", quantize(*pruned[recipe], capture=capture))
        calibrated = record(recipe + " > calibrate", calibrate(*pruned[recipe], batches=calib, capture=capture))
        record(recipe + " > calibrate > quantize", quantize(*calibrated, capture=capture))
    record("prune local_magnitude 70%", prune(model, base, sparsity=0.7, method="local_magnitude",
                                               capture=capture, **PRUNE_SCOPE))
    record("prune random 50%", prune(model, base, sparsity=0.5, method="random", seed=0, capture=capture,
                                     **PRUNE_SCOPE))
    return results
