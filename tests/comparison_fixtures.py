"""Synthetic comparison data for tests and the benchmark: models with outputs and layers from numpy.

:func:`log_models` writes a base and derived models (pruned / noisy copies) with the
artifact_io writers, so the Performance Comparison can be exercised without torch.
"""

from __future__ import annotations

import base64
import io
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from mlflow_cc.artifacts import log_dataset, log_layers, log_outputs, summarize_tensor
from mlflow_cc.track.tracking import derive_model, log_base_model

CLASSES = [f"class {i}" for i in range(10)]


@dataclass
class Logged:
    """What :func:`log_models` wrote: run ids (base first), names, the dataset run and the raw logits."""

    experiment_id: str
    run_ids: list[str]
    names: list[str]
    dataset_run_id: str
    labels: np.ndarray
    logits: dict[str, np.ndarray] = field(default_factory=dict)


def png_thumbnail(pixels: np.ndarray) -> str:
    """A tiny greyscale PNG (8-bit, no Pillow needed), base64."""
    h, w = pixels.shape
    raw = b"".join(b"\x00" + bytes(pixels[r].astype(np.uint8)) for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    header = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    buf = io.BytesIO(png)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def layer_arrays(rng: np.random.Generator, scale: int = 1) -> dict[str, np.ndarray]:
    """A small module tree of weights: encoder.layer.{0,1}.{dense,norm}, head."""
    out: dict[str, np.ndarray] = {}
    for i in range(2):
        out[f"encoder.layer.{i}.dense.weight"] = rng.normal(0, 0.1, (32 * scale, 32)).astype(np.float32)
        out[f"encoder.layer.{i}.dense.bias"] = rng.normal(0, 0.01, 32 * scale).astype(np.float32)
        out[f"encoder.layer.{i}.norm.weight"] = (1 + rng.normal(0, 0.05, 32)).astype(np.float32)
    out["head.weight"] = rng.normal(0, 0.1, (10, 32)).astype(np.float32)
    return out


def log_models(experiment: str, uri: str, *, n_models: int = 12, n_instances: int = 600, seed: int = 0,
               with_layers: bool = True, skip_outputs: tuple[int, ...] = (), skip_layers: tuple[int, ...] = ()
               ) -> Logged:
    """Log a base and ``n_models - 1`` children (pruned at growing sparsity), all with outputs and layers.

    ``skip_outputs`` / ``skip_layers``: indices of models that log no outputs / layers.
    """
    rng = np.random.default_rng(seed)
    client = MlflowClient(uri)
    ids = [f"img-{i:05d}" for i in range(n_instances)]
    labels = rng.integers(0, 10, n_instances)
    group = np.where(np.isin(labels, [3, 8]), "rare", "common")
    instances = pd.DataFrame({"instance_id": ids, "label": labels, "meta_group": group})
    previews = pd.DataFrame({"instance_id": ids, "kind": "image",
                             "value": [png_thumbnail(rng.integers(0, 255, (8, 8))) for _ in ids]})
    base_logits = rng.normal(0, 1, (n_instances, 10)).astype(np.float32)
    base_logits[np.arange(n_instances), labels] += 3.0
    weights = layer_arrays(rng)
    logged = Logged("", [], [], "", labels)
    with log_base_model("base model", experiment=experiment, tracking_uri=uri) as base:
        pass
    logged.experiment_id = base.experiment_id
    logged.dataset_run_id = log_dataset(base.experiment_id, "synthetic", instances, previews, CLASSES, client=client)
    runs = [(base.run_id, "base model", 0.0)]
    for k in range(1, n_models):
        sparsity = round(k / n_models, 2)
        with derive_model(base.run_id, "prune", {"sparsity": sparsity}, tracking_uri=uri) as child:
            pass
        runs.append((child.run_id, f"prune {sparsity}", sparsity))
    for i, (run_id, name, sparsity) in enumerate(runs):
        noise = rng.normal(0, 4 * sparsity, base_logits.shape).astype(np.float32)
        logits = base_logits + noise
        logits[np.isin(labels, [3, 8])] -= 3 * sparsity * (np.arange(10) == 3)  # rare classes suffer more
        logged.logits[run_id] = logits
        if i not in skip_outputs:
            log_outputs(run_id, ids, logits, labels, dataset="synthetic", dataset_run_id=logged.dataset_run_id,
                        client=client)
        if with_layers and i not in skip_layers:
            pruned = {}
            for name_t, w in weights.items():
                w = w.copy()
                if sparsity and "norm" not in name_t:
                    cut = np.quantile(np.abs(w), sparsity)
                    w[np.abs(w) < cut] = 0.0
                pruned[name_t] = w
            acts = {m.rsplit(".", 1)[0]: rng.normal(0, 1 + sparsity, 256).astype(np.float32)
                    for m in weights if m.endswith("weight")}
            summary = pd.DataFrame([summarize_tensor(n.rsplit(".", 1)[0], n.rsplit(".", 1)[1], "Linear", a)
                                    for n, a in pruned.items()])
            log_layers(run_id, summary, pruned, acts, client=client)
        logged.run_ids.append(run_id)
        logged.names.append(name)
    return logged
