"""An evaluation set (the same instances for every model of an experiment) and batched evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mlflow_cc.torch.forward import (
    Forward,
    Inputs,
    batches,
    default_forward,
    model_device,
    num_instances,
    output_tensor,
    to_device,
)


@dataclass
class EvalSet:
    """An evaluation set, the same for every model of an experiment.

    ``inputs``: a tensor, tuple or mapping of tensors batched along dim 0 (N instances).
    ``forward(model, batch)`` returns (B, K) logits, or a mapping with ``"logits"`` and other
    (B, ...) arrays (e.g. embeddings); default: call the model, take ``.logits`` if any.
    ``scores(outputs)`` turns the concatenated outputs into extra per-instance (N,) scores
    (stored as ``score_<name>``). ``metadata``: ``instance_id`` plus ``meta_<attribute>``
    subgroup columns; ``previews``: ``instance_id``, ``kind``, ``value``; both stored once per
    experiment in the dataset run.
    """

    name: str
    instance_ids: Sequence[str]
    inputs: Inputs
    labels: np.ndarray | Sequence[int] | torch.Tensor | None = None
    class_names: Sequence[str] | None = None
    metadata: pd.DataFrame | None = None
    previews: pd.DataFrame | None = None
    forward: Forward = default_forward
    scores: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None
    batch_size: int = 256

    def __post_init__(self) -> None:
        n = num_instances(self.inputs)
        if len(self.instance_ids) != n:
            raise ValueError(f"eval set {self.name!r}: {len(self.instance_ids)} instance ids for {n} inputs")
        if self.labels is not None:
            self.labels = np.asarray(self.labels.cpu() if isinstance(self.labels, torch.Tensor) else self.labels)
            if len(self.labels) != n:
                raise ValueError(f"eval set {self.name!r}: {len(self.labels)} labels for {n} inputs")

    def __len__(self) -> int:
        return len(self.instance_ids)

    def instances_table(self) -> pd.DataFrame:
        """The dataset run's instances: ``instance_id``, ``label``, ``label_name``, ``meta_*``."""
        table = pd.DataFrame({"instance_id": [str(i) for i in self.instance_ids]})
        table["label"] = self.labels if self.labels is not None else None
        if self.metadata is not None:
            meta = self.metadata.copy()
            meta["instance_id"] = meta["instance_id"].astype(str)
            table = table.merge(meta.drop(columns=["label"], errors="ignore"), on="instance_id", how="left")
        return table


def evaluate(model: nn.Module, eval_set: EvalSet, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` over ``eval_set`` in batches (no grad, eval mode, mode restored after).

    Returns the forward outputs concatenated over batches as numpy arrays; ``"logits"`` is (N, K).
    A tqdm progress bar shows the batches unless ``progress`` is False.
    """
    device = model_device(model)
    parts: dict[str, list[np.ndarray]] = {}
    was_training = model.training
    model.eval()
    n_batches = -(-len(eval_set) // eval_set.batch_size)
    try:
        with torch.no_grad():
            for batch in tqdm(batches(eval_set.inputs, eval_set.batch_size), total=n_batches,
                              desc=f"evaluate on {eval_set.name}", leave=False, disable=not progress):
                out = eval_set.forward(model, to_device(batch, device))
                named = dict(out) if isinstance(out, Mapping) else {"logits": output_tensor(out)}
                for key, value in named.items():
                    parts.setdefault(key, []).append(value.detach().float().cpu().numpy())
    finally:
        model.train(was_training)
    if "logits" not in parts:
        raise ValueError(f"eval set {eval_set.name!r}: forward returned no 'logits'")
    return {key: np.concatenate(values) for key, values in parts.items()}
