"""The digits test set as an evaluation set (8x8 thumbnails as previews), and training batches."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from mlflow_cc.artifacts import image_preview
from mlflow_cc.studies.digits_data import CLASS_NAMES, DigitsSplit
from mlflow_cc.torch.capture import EvalSet, MetricsFn


def digits_eval_set(split: DigitsSplit, name: str = "digits-test",
                    subgroups: Mapping[str, Mapping[int, str]] | None = None) -> EvalSet:
    """The test split as an :class:`EvalSet` with an image preview per instance.

    ``subgroups``: ``{attribute: {class index: group}}``, stored as ``meta_<attribute>``
    (e.g. ``{"group": {3: "rare", 8: "rare"}}``; classes not listed are "common").
    """
    labels = split.y_test.numpy()
    previews = pd.DataFrame({"instance_id": split.test_ids, "kind": "image",
                             "value": [image_preview(img[0]) for img in split.x_test.numpy()]})
    metadata = None
    if subgroups:
        metadata = pd.DataFrame({"instance_id": split.test_ids})
        for attribute, groups in subgroups.items():
            metadata[f"meta_{attribute}"] = [groups.get(int(y), "common") for y in labels]
    return EvalSet(name, split.test_ids, split.x_test, labels, class_names=CLASS_NAMES,
                   metadata=metadata, previews=previews, batch_size=512)


def accuracy_metric(labels: np.ndarray) -> MetricsFn:
    """A ``Capture.metrics`` callback: ``accuracy`` (fraction correct) from the evaluation logits."""
    def metrics(_model: torch.nn.Module, outputs: dict[str, np.ndarray] | None) -> dict[str, float]:
        assert outputs is not None
        return {"accuracy": float((outputs["logits"].argmax(1) == labels).mean())}
    return metrics


def training_batches(split: DigitsSplit, batch_size: int = 64, *, limit: int | None = None,
                     seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled ``(images, labels)`` batches of the training split (the first ``limit`` only)."""
    order = torch.randperm(len(split.y_train), generator=torch.Generator().manual_seed(seed))
    out = [(split.x_train[idx], split.y_train[idx]) for idx in order.split(batch_size)]
    return out[:limit] if limit is not None else out
