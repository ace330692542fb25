"""A first example: a small CNN on scikit-learn's digits, compressed with plain torch calls.

Only the logging API is used (no mlflow-cc PyTorch helpers): every model is an MLflow
run, each derived model's run has its source model's run as parent.

    python examples/digits_basic.py [--tracking-uri URI] [--experiment NAME]

Runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import io
import time
import warnings

import mlflow
import torch
from torch import nn
from torch.nn.utils import prune

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.studies.digits_data import DigitsCNN, accuracy, load_digits_split, train


def efficiency(model: nn.Module, sample: torch.Tensor) -> dict[str, float]:
    """Size (bytes of the saved state dict), parameters, nonzeros, sparsity, latency (ms)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    params = [p for p in model.parameters()]
    weights = [m.weight() if callable(getattr(m, "weight", None)) else None for m in model.modules()]
    total = sum(p.numel() for p in params) + sum(w.numel() for w in weights if w is not None)
    nonzero = sum(int((p != 0).sum()) for p in params) + sum(
        int((w.dequantize() != 0).sum()) for w in weights if w is not None)
    with torch.no_grad():
        for _ in range(3):
            model(sample)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            model(sample)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {contract.METRIC_SIZE: buf.tell(), contract.METRIC_PARAMS: total,
            contract.METRIC_NONZERO: nonzero, contract.METRIC_SPARSITY: 1 - nonzero / total,
            contract.METRIC_LATENCY: times[len(times) // 2]}


def global_magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    pruned = copy.deepcopy(model)
    targets = [(m, "weight") for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    for m, name in targets:
        prune.remove(m, name)  # bake the mask in: the zeros are the model now
    return pruned


def quantize(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


def finetune(model: nn.Module, data, epochs: int) -> nn.Module:
    tuned = copy.deepcopy(model)
    masks = {n: (p != 0) for n, p in tuned.named_parameters() if p.dim() > 1}
    train(tuned, data.x_train, data.y_train, epochs=epochs, lr=1e-3)
    with torch.no_grad():  # keep pruned weights at zero
        for n, p in tuned.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return tuned


def main(tracking_uri: str | None = None, experiment: str = "digits-basic") -> None:
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    torch.manual_seed(0)
    data = load_digits_split()
    sample = data.x_test[:32]
    cc.set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment=experiment,
                       tracking_uri=tracking_uri)

    def log(run: cc.ModelRun, model: nn.Module) -> None:
        run.log_metrics({"accuracy": accuracy(model, data.x_test, data.y_test), **efficiency(model, sample)})

    base_model = train(DigitsCNN(), data.x_train, data.y_train)
    with cc.log_base_model("digits-cnn", experiment=experiment, tracking_uri=tracking_uri,
                           params={"epochs": 8, "lr": 3e-3}) as base:
        log(base, base_model)
    with cc.derive_model(base, "quantize", {"bits": 8, "method": "dynamic"}) as run:
        log(run, quantize(base_model))
    for sparsity in (0.5, 0.7, 0.9):
        pruned = global_magnitude_prune(base_model, sparsity)
        with cc.derive_model(base, "prune", {"method": "global_magnitude", "sparsity": sparsity}) as p:
            log(p, pruned)
        with cc.derive_model(p, "finetune", {"epochs": 2, "lr": 1e-3}) as ft:
            tuned = finetune(pruned, data, epochs=2)
            log(ft, tuned)
        with cc.derive_model(ft, "quantize", {"bits": 8, "method": "dynamic"}) as q:
            log(q, quantize(tuned))
        with cc.derive_model(p, "quantize", {"bits": 8, "method": "dynamic"}) as q:
            log(q, quantize(pruned))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="digits-basic")
    args = parser.parse_args()
    main(args.tracking_uri, args.experiment)
