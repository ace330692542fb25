"""Evaluate a model and log what comparison needs: outputs, layers and activations.

A :class:`Capture` says what to log about every model of an experiment (the same evaluation set,
the same activation sample); :meth:`Capture.log` logs it on one model's run::

    capture = Capture(EvalSet("digits-test", ids, x_test, y_test, class_names=names),
                      metrics=lambda model, out: {"accuracy": float((out["logits"].argmax(1) == y).mean())},
                      sample_input=x_test[:64])
    with cc.log_base_model("cnn", experiment="digits") as base:
        capture.log(base, model)

Activations: forward hooks on every leaf module while the model runs on a fixed sample of the
evaluation set (``activation_instances`` instances chosen by ``seed``: the same ids for every
model). Each module's output is flattened and, when longer than ``activation_cap`` values
(default :data:`ACTIVATION_CAP` = 4,096), sampled at positions drawn with a seed derived from the
module name, so every model of the experiment samples the same positions.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mlflow_cc import artifact_io
from mlflow_cc.torch.effective import (
    EffectiveTensor,
    effective_tensors,
    folded,
    is_quantized_module,
)
from mlflow_cc.torch.forward import (
    Forward,
    Inputs,
    batches,
    default_forward,
    model_device,
    num_instances,
    output_tensor,
    take,
    to_device,
)
from mlflow_cc.torch.measure import efficiency
from mlflow_cc.tracking import ModelRun

#: Values kept per module from one activation sample (float32: 16 KiB per module).
ACTIVATION_CAP = 4096
#: Instances in the activation sample.
ACTIVATION_INSTANCES = 32
#: Leaf modules whose output is their input at evaluation time: not hooked.
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)

#: ``metrics(model, outputs)`` -> user metrics; ``outputs`` holds the evaluation arrays
#: (``outputs["logits"]`` is (N, K)), or is None when the capture has no evaluation set.
MetricsFn = Callable[[nn.Module, "dict[str, np.ndarray] | None"], Mapping[str, float]]


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


def activation_indices(n: int, count: int, seed: int) -> np.ndarray:
    """Sorted indices of the activation sample: ``count`` of ``n`` instances drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def sample_positions(module_name: str, numel: int, cap: int, seed: int) -> np.ndarray | None:
    """Positions kept from a module's flattened output, or None to keep all (``numel <= cap``).

    Drawn with a seed from ``seed`` and the module name, so equal names and sizes sample equally.
    """
    if numel <= cap:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(module_name.encode())])
    return np.sort(rng.choice(numel, size=cap, replace=False))


def hooked_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are captured: leaves (a quantized module counts as a leaf),
    minus dropout and identity."""
    out: list[tuple[str, nn.Module]] = []
    inside_quantized: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(q + ".") for q in inside_quantized):
            continue
        if is_quantized_module(module):
            inside_quantized.append(name)
        elif next(module.children(), None) is not None or isinstance(module, _PASS_THROUGH):
            continue
        out.append((name, module))
    return out


def capture_activations(model: nn.Module, eval_set: EvalSet, indices: np.ndarray, *,
                        cap: int = ACTIVATION_CAP, seed: int = 0) -> dict[str, np.ndarray]:
    """Each hooked module's output on the instances ``indices``, flattened, capped at ``cap`` values."""
    captured: dict[str, np.ndarray] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name in captured:  # a module called twice: keep its first call
                return
            try:
                tensor = output_tensor(output)
            except TypeError:
                return
            if not tensor.is_floating_point():
                return
            flat = tensor.detach().float().reshape(-1).cpu().numpy()
            positions = sample_positions(name, flat.size, cap, seed)
            captured[name] = flat if positions is None else flat[positions]
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in hooked_modules(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = take(eval_set.inputs, torch.as_tensor(indices))
            eval_set.forward(model, to_device(batch, model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return captured


#: Elements per chunk when summarizing a tensor (1 MB of float32: stays in cache).
_SUMMARY_CHUNK = 1 << 18


def tensor_summary(t: EffectiveTensor) -> dict[str, Any]:
    """One layer-summary row, the columns of :func:`mlflow_cc.artifact_io.summarize_tensor`.

    Same statistics (min, max, mean, population std, zeros), computed without a float64 copy
    of the whole tensor: per chunk, numpy's pairwise float32 sums (relative error ~1e-7), the
    chunks added in float64; the std from centred squares. About twice as fast as float64
    arithmetic, which keeps a large model's layer capture near the cost of writing its weights.
    """
    flat = t.value.reshape(-1).numpy()
    n = int(flat.size)
    row: dict[str, Any] = {"module": t.module, "tensor": t.tensor, "module_type": t.module_type,
                           "shape": json.dumps(list(t.value.shape)), "numel": n,
                           "zeros": n - int(np.count_nonzero(flat)), "min": math.nan, "max": math.nan,
                           "mean": math.nan, "std": math.nan, "dtype": t.dtype, "quantized": bool(t.quantized)}
    if n:
        chunks = [flat[start:start + _SUMMARY_CHUNK] for start in range(0, n, _SUMMARY_CHUNK)]
        mean = math.fsum(float(chunk.sum(dtype=np.float32)) for chunk in chunks) / n
        buffer = np.empty(min(n, _SUMMARY_CHUNK), np.float32)
        squares = 0.0
        for chunk in chunks:
            centred = buffer[:chunk.size]
            np.subtract(chunk, np.float32(mean), out=centred)  # no BLAS: its threads stall on shared cores
            np.multiply(centred, centred, out=centred)
            squares += float(centred.sum(dtype=np.float32))
        row.update(min=float(flat.min()), max=float(flat.max()), mean=mean, std=math.sqrt(squares / n))
    return row


def layer_tables(model: nn.Module, weights_exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(summary rows, effective weights) of every parameter and float buffer of ``model``.

    Tensors whose names match a ``weights_exclude`` pattern (fnmatch) are summarized but their
    values not returned (to keep artifacts small, e.g. a large embedding table).
    """
    rows: list[dict[str, Any]] = []
    weights: dict[str, np.ndarray] = {}
    for t in effective_tensors(model):
        rows.append(tensor_summary(t))
        if not any(fnmatchcase(t.name, pattern) for pattern in weights_exclude):
            weights[t.name] = t.value.numpy()
    return pd.DataFrame(rows, columns=list(artifact_io.SUMMARY_COLUMNS)), weights


def log_layers(model_run: ModelRun, model: nn.Module, *, eval_set: EvalSet | None = None,
               activations: bool = True, activation_instances: int = ACTIVATION_INSTANCES,
               activation_cap: int = ACTIVATION_CAP, seed: int = 0,
               weights_exclude: Sequence[str] = ()) -> None:
    """Log the layer summary, effective weights and (with an ``eval_set``) sampled activations."""
    summary, weights = layer_tables(model, weights_exclude)
    acts: dict[str, np.ndarray] | None = None
    metadata: dict[str, str] = {}
    if activations and eval_set is not None:
        indices = activation_indices(len(eval_set), activation_instances, seed)
        acts = capture_activations(model, eval_set, indices, cap=activation_cap, seed=seed)
        metadata = {"activation_seed": str(seed), "activation_cap": str(activation_cap),
                    "activation_instance_ids": ",".join(str(eval_set.instance_ids[i]) for i in indices)}
    artifact_io.log_layers(model_run.run_id, summary, weights, acts, metadata=metadata,
                           allow_nonfinite=True, client=model_run.client)


@dataclass
class Capture:
    """What to log about each model of an experiment; :meth:`log` logs it on one model run.

    ``metrics(model, outputs)``: user metrics (e.g. accuracy), called after evaluation.
    ``sample_input``: input of the latency measurement (``latency_ms``); none: no latency.
    ``outputs``/``layers``/``activations``: which artifacts to log (outputs and activations need
    ``eval_set``). ``weights_exclude``: fnmatch patterns of tensors summarized but not stored.
    """

    eval_set: EvalSet | None = None
    metrics: MetricsFn | None = None
    sample_input: Any | None = None
    outputs: bool = True
    layers: bool = True
    activations: bool = True
    activation_instances: int = ACTIVATION_INSTANCES
    activation_cap: int = ACTIVATION_CAP
    seed: int = 0
    weights_exclude: Sequence[str] = ()
    latency_runs: int = 10
    progress: bool = True
    _dataset_runs: dict[str, str] = field(default_factory=dict, repr=False)

    def log(self, model_run: ModelRun, model: nn.Module) -> dict[str, float]:
        """Measure and evaluate ``model`` and log everything requested on ``model_run``.

        Returns the metrics logged (efficiency metrics under contract names plus user metrics).
        The model is not changed (its train/eval mode is restored). A pruned model is measured and
        evaluated with its masks folded into a copy, as it would be deployed: the pruning hooks
        would otherwise add a weight-times-mask product to every forward pass (and to latency).
        """
        model = folded(model)
        metrics = efficiency(model, self.sample_input, runs=self.latency_runs)
        outputs = evaluate(model, self.eval_set, progress=self.progress) if self.eval_set is not None else None
        if self.metrics is not None:
            metrics.update({k: float(v) for k, v in self.metrics(model, outputs).items()})
        model_run.log_metrics(metrics)
        if outputs is not None and self.outputs:
            self.log_outputs(model_run, outputs)
        if self.layers:
            log_layers(model_run, model, eval_set=self.eval_set, activations=self.activations,
                       activation_instances=self.activation_instances,
                       activation_cap=self.activation_cap, seed=self.seed,
                       weights_exclude=self.weights_exclude)
        return metrics

    def log_outputs(self, model_run: ModelRun, outputs: dict[str, np.ndarray]) -> None:
        """Log evaluation ``outputs`` (from :func:`evaluate`) and link the shared dataset run."""
        eval_set = self.eval_set
        assert eval_set is not None
        extra = dict(eval_set.scores(outputs)) if eval_set.scores is not None else None
        artifact_io.log_outputs(model_run.run_id, list(eval_set.instance_ids), outputs["logits"],
                                eval_set.labels, dataset=eval_set.name,
                                dataset_run_id=self.dataset_run(model_run),
                                extra=extra, client=model_run.client)

    def dataset_run(self, model_run: ModelRun) -> str:
        """The run id of the eval set's dataset run in ``model_run``'s experiment, created on first
        use: its metadata and previews are stored once and shared by every model."""
        eval_set = self.eval_set
        assert eval_set is not None
        key = f"{model_run.tracking_uri}|{model_run.experiment_id}"
        if key not in self._dataset_runs:
            self._dataset_runs[key] = artifact_io.log_dataset(
                model_run.experiment_id, eval_set.name, eval_set.instances_table(), eval_set.previews,
                class_names=eval_set.class_names, client=model_run.client)
        return self._dataset_runs[key]
