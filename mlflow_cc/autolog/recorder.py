"""Which run each live model is, and the runs autologging writes.

Models are tracked by identity (a weak-keyed map: a model that is garbage collected is
forgotten). The first time a model is operated on it is logged as a base model, measured
before the operation; every operation then makes a child of the model's current run, and the
result (the same object for in-place operations, a new one otherwise) takes that child as its
current run. Optimizer steps counted on a model's parameters since its current run turn into a
``finetune`` child, logged when the next operation starts (or when autologging is disabled or
the process exits), so the operation's parent is the fine-tuned model.

Nothing here raises into the user's code: :mod:`mlflow_cc.autolog.patching` calls it inside a
guard that turns errors into warnings.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow

from mlflow_cc import contract
from mlflow_cc.track.tracking import ModelRun, ParamValue, derive_model, log_base_model

_log = logging.getLogger("mlflow_cc.autolog")

#: The integration name (MLflow's autologging config key and the ``mlflow.autologging`` tag value).
INTEGRATION = "mlflow_cc"
#: MLflow's own tag naming the autologging integration that made a run.
TAG_AUTOLOGGING = "mlflow.autologging"
#: On a coalesced per-layer pruning run: the tensors pruned by its calls, comma separated.
TAG_TENSORS = contract.PREFIX + "autolog.tensors"

EvaluateFn = Callable[[Any], Mapping[str, float]]


@dataclass
class Config:
    experiment: str | None = None
    evaluate: EvaluateFn | None = None
    capture: Any | None = None  # a mlflow_cc.torch.Capture


@dataclass
class Tracked:
    """A live model's place in the lineage."""

    run_id: str
    tracking_uri: str
    steps: int = 0  # optimizer steps on its parameters since ``run_id`` was logged
    optimizer: str = ""
    lr: float | None = None
    coalesce: Hashable | None = None  # the per-layer pruning call ``run_id`` can absorb
    tensors: list[str] = field(default_factory=list)


class Recorder:
    """The identity registry and the lineage writes of autologging (one per process)."""

    def __init__(self) -> None:
        self.config = Config()
        self.lock = threading.RLock()
        self.models: weakref.WeakKeyDictionary[Any, Tracked] = weakref.WeakKeyDictionary()
        self.names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        #: Bumped whenever ``models`` changes (the optimizer hook caches which models it touches).
        self.version = 0

    # -- identity ----------------------------------------------------------------------
    def name(self, model: Any, name: str) -> None:
        """Name ``model``'s base run ``name`` (renames the run if it is already logged as a base)."""
        with self.lock:
            self.names[model] = str(name)
            state = self.models.get(model)
        if state is not None:
            try:
                client = mlflow.MlflowClient(state.tracking_uri)
                if contract.TAG_PARENT not in client.get_run(state.run_id).data.tags:
                    client.update_run(state.run_id, name=str(name))
            except Exception as exc:  # noqa: BLE001 - never break the user's call
                warn(f"could not rename run {state.run_id} to {name!r}: {exc}")

    def tracked(self) -> list[tuple[Any, Tracked]]:
        with self.lock:
            return list(self.models.items())

    def forget(self) -> None:
        with self.lock:
            self.models.clear()
            self.version += 1

    # -- operations --------------------------------------------------------------------
    def before(self, model: Any) -> Tracked:
        """The run an operation on ``model`` derives from: its base on first sight, its fine-tuned
        child if an optimizer stepped on it since."""
        with self.lock:
            state = self.models.get(model)
            if state is None:
                return self._log_base(model)
            if state.steps:
                self._log_finetune(model, state)
            return state

    def after(self, parent: Tracked, model_in: Any, model_out: Any, operation: str,
              params: Mapping[str, ParamValue], *, coalesce: Hashable | None = None,
              tensor: str | None = None) -> None:
        """Log ``model_out`` as made from ``parent`` by ``operation``.

        Consecutive per-layer pruning calls with the same method and parameters on the same model
        (``coalesce`` equal, nothing in between) are one pruning step: the later calls add their
        tensor to the run and re-measure it instead of making a chain of one-layer children.
        """
        with self.lock:
            if (coalesce is not None and model_out is model_in and parent.coalesce == coalesce
                    and parent.steps == 0 and self.models.get(model_in) is parent):
                parent.tensors.append(tensor or "?")
                run = ModelRun(mlflow.MlflowClient(parent.tracking_uri), parent.tracking_uri,
                               parent.run_id, "", "", 0)
                run.set_tag(TAG_TENSORS, ",".join(parent.tensors)[:5000])
                self._measure(run, model_out, end=False)
                return
            run = derive_model(parent.run_id, operation, params, tracking_uri=parent.tracking_uri,
                               tags={TAG_AUTOLOGGING: INTEGRATION,
                                     **({TAG_TENSORS: tensor} if tensor else {})})
            self._set(model_out, Tracked(run.run_id, parent.tracking_uri, coalesce=coalesce,
                                         tensors=[tensor] if tensor else []))
            self._measure(run, model_out)

    def log_checkpoint_base(self, name: str, params: Mapping[str, Any]) -> Tracked:
        """A base model known only by its checkpoint (loaded quantized, never in full precision)."""
        with self.lock:
            run = log_base_model(name, experiment=self.config.experiment, params=params,
                                 tags={TAG_AUTOLOGGING: INTEGRATION})
            run.end()
            return Tracked(run.run_id, run.tracking_uri)

    def step(self, models: list[Any], optimizer: Any) -> None:
        """Count one optimizer step on each of ``models`` (tracked models the optimizer trains)."""
        with self.lock:
            lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
            for model in models:
                state = self.models.get(model)
                if state is None:
                    continue
                state.steps += 1
                state.optimizer = type(optimizer).__name__.lower()
                try:
                    state.lr = float(lr) if lr is not None else None
                except (TypeError, ValueError):
                    state.lr = None

    def flush(self) -> None:
        """Log the pending fine-tuning of every tracked model (autologging ends or the process exits)."""
        for model, state in self.tracked():
            if state.steps:
                try:
                    with self.lock:
                        self._log_finetune(model, state)
                except Exception as exc:  # noqa: BLE001 - never break the user's call
                    warn(f"could not log the fine-tuning of a {type(model).__name__}: {exc}")

    # -- internals ---------------------------------------------------------------------
    def _set(self, model: Any, state: Tracked) -> None:
        self.models[model] = state
        self.version += 1

    def _log_base(self, model: Any) -> Tracked:
        name = self.names.get(model) or type(model).__name__
        run = log_base_model(name, experiment=self.config.experiment, tags={TAG_AUTOLOGGING: INTEGRATION})
        state = Tracked(run.run_id, run.tracking_uri)
        self._set(model, state)
        self._measure(run, model)
        return state

    def _log_finetune(self, model: Any, state: Tracked) -> None:
        params: dict[str, ParamValue] = {"steps": state.steps, "optimizer": state.optimizer or "unknown"}
        if state.lr is not None:
            params["lr"] = state.lr
        state.steps = 0  # first: a failure below must not log the same fine-tuning twice
        run = derive_model(state.run_id, "finetune", params, tracking_uri=state.tracking_uri,
                           tags={TAG_AUTOLOGGING: INTEGRATION})
        state.run_id, state.coalesce, state.tensors = run.run_id, None, []
        self.version += 1
        self._measure(run, model)

    def _measure(self, run: ModelRun, model: Any, *, end: bool = True) -> None:
        """Size, nonzero count and sparsity (or the configured Capture), then ``evaluate``; the run
        ends FINISHED, or FAILED with the reason if any of it raised (a warning, never an error)."""
        step = "measuring the model"
        try:
            if self.config.capture is not None:
                step = "capture"
                self.config.capture.log(run, model)
            else:
                from mlflow_cc.torch.measure import efficiency

                run.log_metrics(efficiency(model))
            if self.config.evaluate is not None:
                step = "evaluate"
                run.log_metrics(_evaluate(self.config.evaluate, model))
        except Exception as exc:  # noqa: BLE001 - never break the user's call
            reason = f"{step} failed: {type(exc).__name__}: {exc}"
            warn(f"{run.name or run.run_id}: {reason}; the run is marked FAILED")
            try:
                run.fail(reason)
            except Exception as exc2:  # noqa: BLE001 - never break the user's call
                warn(f"could not mark run {run.run_id} FAILED: {exc2}")
            return
        if end:
            run.end()


def _evaluate(fn: EvaluateFn, model: Any) -> dict[str, float]:
    """``fn(model)`` as float metrics; the model's train/eval mode is restored after."""
    training = getattr(model, "training", None)
    try:
        result = fn(model)
    finally:
        if training is not None and hasattr(model, "train"):
            model.train(training)
    if not isinstance(result, Mapping):
        raise TypeError(f"evaluate must return a dict of metrics, not {type(result).__name__}")
    return {str(k): float(v) for k, v in result.items()}


def warn(message: str) -> None:
    """A warning from autologging, unless it was enabled with ``silent=True``."""
    from mlflow.utils.autologging_utils import get_autologging_config

    if not get_autologging_config(INTEGRATION, "silent", False):
        _log.warning("mlflow_cc.autolog: %s", message)


RECORDER = Recorder()
