"""Compression bias study: does pruning hurt rare classes more?

The paper's CelebA case with data that needs no download: digits 3 and 8 are made rare in
training (:data:`RARE_FRACTION` of them kept), then the CNN is pruned by global magnitude at
10-99 % sparsity. The evaluation set is the ordinary (balanced) test split with the subgroup
``meta_group`` = "rare" / "common", so the Behaviours comparison shows accuracy per group.
"""

from __future__ import annotations

import numpy as np
import torch

import mlflow_cc as cc
from mlflow_cc.studies.digits_data import DigitsCNN, load_digits_split, train
from mlflow_cc.studies.digits_eval import digits_eval_set
from mlflow_cc.torch import Capture, log_base, prune
from mlflow_cc.torch.capture import MetricsFn

EXPERIMENT = "compression-bias"
RARE_CLASSES = (3, 8)
#: Fraction of each rare class kept in the training split.
RARE_FRACTION = 0.08
SPARSITIES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)


def group_accuracy(labels: np.ndarray) -> MetricsFn:
    """``accuracy`` overall, ``accuracy_rare`` and ``accuracy_common`` (fractions correct)."""
    rare = np.isin(labels, RARE_CLASSES)

    def metrics(_model: torch.nn.Module, outputs: dict[str, np.ndarray] | None) -> dict[str, float]:
        assert outputs is not None
        correct = outputs["logits"].argmax(1) == labels
        return {"accuracy": float(correct.mean()), "accuracy_rare": float(correct[rare].mean()),
                "accuracy_common": float(correct[~rare].mean())}
    return metrics


def build(tracking_uri: str | None = None, *, experiment: str = EXPERIMENT,
          progress: bool = False) -> dict[str, dict[str, float]]:
    """Train on the skewed split, prune at each of :data:`SPARSITIES`; returns
    {model: {accuracy, accuracy_rare, accuracy_common}}."""
    torch.manual_seed(0)
    split = load_digits_split(seed=0, keep_fraction={c: RARE_FRACTION for c in RARE_CLASSES})
    model = train(DigitsCNN(), split.x_train, split.y_train, epochs=8, seed=0)
    eval_set = digits_eval_set(split, "digits-test-rare38",
                               subgroups={"group": {c: "rare" for c in RARE_CLASSES}})
    capture = Capture(eval_set, metrics=group_accuracy(np.asarray(eval_set.labels)),
                      sample_input=split.x_test[:64], progress=progress)
    for name, primary in (("accuracy", True), ("accuracy_rare", False), ("accuracy_common", False)):
        cc.set_metric_info(name, direction="max", format=".1%", primary=primary, experiment=experiment,
                           tracking_uri=tracking_uri)
    counts = np.bincount(split.y_train.numpy(), minlength=10)
    base = log_base(model, "digits-cnn-rare38", experiment=experiment, capture=capture, tracking_uri=tracking_uri,
                    params={"rare_classes": "3,8", "rare_fraction": RARE_FRACTION,
                            "train_count_rare": int(counts[list(RARE_CLASSES)].sum()),
                            "train_count_common": int(counts.sum() - counts[list(RARE_CLASSES)].sum())})
    results = {"base": _metrics(base)}
    for sparsity in SPARSITIES:
        _, run = prune(model, base, sparsity=sparsity, method="global_magnitude", exclude_types=["norm"],
                       tensors=["weight"], capture=capture)
        results[f"prune {sparsity:.0%}"] = _metrics(run)
    return results


def _metrics(run: cc.ModelRun) -> dict[str, float]:
    data = run.client.get_run(run.run_id).data.metrics
    return {k: data[k] for k in ("accuracy", "accuracy_rare", "accuracy_common")}
