"""Write side: register base models and derive compressed models as MLflow runs.

A model is an MLflow run. A base model is a root run; a derived model is a run
whose ``mlflow.parentRunId`` is its source model's run, with the operation that
made it recorded under the keys of :mod:`mlflow_cc.contract`.

Usage::

    import mlflow_cc as cc

    with cc.log_base_model("cnn", experiment="digits") as base:
        base.log_metrics({"accuracy": 0.97})
    with cc.derive_model(base, "prune", {"sparsity": 0.5, "method": "global_magnitude"}) as m:
        m.log_metrics({"accuracy": 0.95})

The ``with`` block makes the run MLflow's active run too, so plain
``mlflow.log_metric`` calls inside it land on the model. An exception inside the
block marks the run FAILED with the reason in a tag, and is re-raised.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.artifacts.upload import artifacts_failed, upload
from mlflow_cc.errors import LineageError, OperationError
from mlflow_cc.metric_info import MetricInfo, validate
from mlflow_cc.read.lineage import default_model_name
from mlflow_cc.track.app_link import APP_URL_ENV  # noqa: F401 - re-exported
from mlflow_cc.track.app_link import app_url as served_app_url

_log = logging.getLogger(__name__)

#: Set to the app's URL (e.g. http://127.0.0.1:8050) to give each run's MLflow
#: description a link that opens the model in the app.

#: MLflow's own experiment tag telling its UI which view an experiment opens on.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"

ParamValue = str | int | float | bool | None


class ModelRun:
    """One model being logged. Use as a context manager, or call :meth:`end`."""

    def __init__(self, client: MlflowClient, tracking_uri: str, run_id: str, experiment_id: str,
                 name: str, step: int) -> None:
        self.client = client
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.name = name
        self.step = step
        self._active = False
        self._ended = False

    def __repr__(self) -> str:
        return f"ModelRun(name={self.name!r}, run_id={self.run_id!r}, step={self.step})"

    # -- logging ---------------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metrics in one call (one round trip to the store)."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def log_params(self, params: Mapping[str, Any]) -> None:
        batch = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[i : i + 100])

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def add_inputs(self, inputs: Mapping[str, str | ModelRun]) -> None:
        """Record extra lineage inputs, ``{role: run}``, e.g. ``{"teacher": teacher_run}``."""
        run = self.client.get_run(self.run_id)
        current = json.loads(run.data.tags.get(contract.TAG_INPUTS, "[]"))
        for role, src in inputs.items():
            src_id = _check_source(self.client, self.tracking_uri, src, what=f"input {role!r}")
            current.append({"run_id": src_id, "role": str(role)})
        self.client.set_tag(self.run_id, contract.TAG_INPUTS, json.dumps(current))

    def log_artifact_file(self, local_path: str, artifact_path: str | None = None) -> None:
        """Upload a file (retried; on failure the run is marked FAILED, see :mod:`mlflow_cc.artifacts.upload`)."""
        upload(self.client, self.run_id, local_path, artifact_path)

    # -- lifecycle -------------------------------------------------------------
    def activate(self) -> None:
        """Make this run MLflow's active run (for plain ``mlflow.log_*`` calls)."""
        if self._active:
            return
        if mlflow.get_tracking_uri() != self.tracking_uri:
            _log.debug("mlflow-cc: %s is in %s, not the active tracking store; plain "
                         "mlflow.log_* calls will not reach it", self.name, self.tracking_uri)
            return
        try:
            mlflow.start_run(run_id=self.run_id, nested=True)
        except MlflowException as exc:
            _log.warning("mlflow-cc: could not make %s the active run (%s); log through the "
                         "ModelRun object instead", self.name, exc)
            return
        self._active = True

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run finished (or ``status``); FAILED if one of its artifacts was not written."""
        if self._ended:
            return
        self._ended = True
        if status == "FINISHED" and artifacts_failed(self.run_id):
            status = "FAILED"  # never let a run with a missing artifact look complete
        if self._active:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(status=status)
                self._active = False
                return
        self.client.set_terminated(self.run_id, status=status)

    def fail(self, reason: str) -> None:
        """Mark the run FAILED, recording ``reason``."""
        try:
            self.client.set_tag(self.run_id, contract.TAG_FAILURE, reason[:5000])
        finally:
            self.end("FAILED")

    def __enter__(self) -> Self:
        self.activate()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.end("FINISHED")
        else:
            self.fail(f"{exc_type.__name__ if exc_type else 'Error'}: {exc}")


# ---------------------------------------------------------------------------
def log_base_model(name: str, *, experiment: str | None = None, params: Mapping[str, Any] | None = None,
                   tags: Mapping[str, str] | None = None, tracking_uri: str | None = None) -> ModelRun:
    """Register a base model as a root run and return it (RUNNING until ended).

    ``experiment`` is a name (created if missing); default: MLflow's active experiment.
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    exp_id = _experiment_id(client, experiment)
    run_tags = {contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION), contract.TAG_KIND: contract.KIND_MODEL,
                contract.TAG_STEP: "0", **(tags or {})}
    return _create(client, uri, exp_id, name, run_tags, params or {}, step=0)


def derive_model(parent: str | ModelRun, operation: str, params: Mapping[str, ParamValue] | None = None,
                 *, name: str | None = None, inputs: Mapping[str, str | ModelRun] | None = None,
                 experiment: str | None = None, tags: Mapping[str, str] | None = None,
                 tracking_uri: str | None = None) -> ModelRun:
    """Create the run of a model made from ``parent`` by ``operation`` with ``params``.

    ``parent`` is a :class:`ModelRun` or a run id (from this or an earlier process).
    ``inputs`` are extra lineage inputs by role, e.g. ``{"teacher": teacher_run_id}``.
    The child goes into the parent's experiment unless ``experiment`` names another.
    Raises :class:`LineageError` for an unknown, deleted or foreign parent and
    :class:`OperationError` for an invalid operation name or parameter.
    """
    uri = tracking_uri or (parent.tracking_uri if isinstance(parent, ModelRun) else mlflow.get_tracking_uri())
    client = MlflowClient(uri)
    op_params = validate_operation(operation, params or {})
    parent_id = _check_source(client, uri, parent, what="parent")
    parent_run = client.get_run(parent_id)
    exp_id = _experiment_id(client, experiment) if experiment else parent_run.info.experiment_id
    step = _step_of(parent_run) + 1
    extra = [
        {"run_id": _check_source(client, uri, src, what=f"input {role!r}"), "role": str(role)}
        for role, src in (inputs or {}).items()
    ]
    label = name or unique_run_name(client, exp_id, default_model_name(operation, op_params))
    run_tags = {
        contract.TAG_PARENT: parent_id,
        contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION),
        contract.TAG_KIND: contract.KIND_MODEL,
        contract.TAG_OPERATION: operation,
        contract.TAG_OPERATION_PARAMS: json.dumps(op_params, sort_keys=True),
        contract.TAG_STEP: str(step),
        **({contract.TAG_INPUTS: json.dumps(extra)} if extra else {}),
        **(tags or {}),
    }
    ui_params = {contract.PARAM_OPERATION_PREFIX + "name": operation,
                 **{contract.PARAM_OPERATION_PREFIX + k: v for k, v in op_params.items()}}
    return _create(client, uri, exp_id, label, run_tags, ui_params, step=step)


def validate_operation(operation: str, params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Check an operation name and its parameters; returns the params as a plain dict."""
    if not isinstance(operation, str) or not contract.OPERATION_NAME_RE.match(operation):
        raise OperationError(
            f"invalid operation name {operation!r}: use a letter followed by up to 63 letters, "
            "digits, spaces, '_', '-' or '.'")
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not contract.PARAM_NAME_RE.match(key):
            raise OperationError(f"operation {operation!r}: invalid parameter name {key!r}")
        if key == "name":
            raise OperationError(f"operation {operation!r}: parameter name 'name' is reserved")
        if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
            value = value.item()
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise OperationError(f"operation {operation!r}: parameter {key!r} must be a str, int, "
                                 f"float, bool or None, not {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise OperationError(f"operation {operation!r}: parameter {key!r} is not finite ({value})")
        if isinstance(value, str) and len(value) > 500:
            raise OperationError(f"operation {operation!r}: parameter {key!r} is longer than 500 characters")
        out[key] = value
    return out


def set_metric_info(name: str, *, direction: str = "max", unit: str = "", format: str = ".4g",
                    primary: bool = False, experiment: str | None = None,
                    tracking_uri: str | None = None) -> MetricInfo:
    """Record how ``name`` is read in an experiment (once per experiment is enough).

    ``direction``: "max" when higher is better, "min" when lower is; ``format`` is a
    Python format spec (".1%", ".3f", ",d") or "bytes"; ``primary`` metrics get the
    Selection Details charts and the default encodings in the app.
    """
    validate(name, direction, primary)
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    info = MetricInfo(name=name, direction=direction, unit=unit, format=format, primary=primary)
    client.set_experiment_tag(_experiment_id(client, experiment), contract.EXP_TAG_METRIC_PREFIX + name,
                              info.to_json())
    return info


def unique_run_name(client: MlflowClient, experiment_id: str, name: str) -> str:
    """``name``, or ``name (2)``, ``name (3)``... : the first no active run of the experiment has.

    One search of the store (run names starting like ``name``). Best effort: two writers naming
    the same model at the same moment can still get the same name (the run ids differ).
    """
    prefix = name.split("'")[0].split("\\")[0]  # LIKE pattern: the part that needs no quoting
    taken: set[str] = set()
    token: str | None = None
    for _ in range(20):  # at most 20,000 runs of the same name: then take the next free number
        page = client.search_runs([experiment_id], f"attributes.run_name LIKE '{prefix}%'",
                                  max_results=1000, page_token=token)
        taken.update(r.info.run_name for r in page if r.info.run_name)
        token = page.token
        if not token:
            break
    if name not in taken:
        return name
    k = 2
    while f"{name} ({k})" in taken:
        k += 1
    return f"{name} ({k})"


# ---------------------------------------------------------------------------
def _create(client: MlflowClient, uri: str, exp_id: str, name: str, tags: dict[str, str],
            params: Mapping[str, Any], step: int) -> ModelRun:
    # All lineage tags go in the one create_run call, so a run either has its full
    # lineage or does not exist.
    run = client.create_run(exp_id, run_name=name, tags=tags)
    model = ModelRun(client, uri, run.info.run_id, exp_id, name, step)
    try:
        if params:
            model.log_params(params)
        app_url = served_app_url(uri)  # MLFLOW_CC_APP_URL, or the app served by the tracking server
        if app_url:
            query = urllib.parse.urlencode({"experiment": exp_id, "select": run.info.run_id})
            client.set_tag(run.info.run_id, "mlflow.note.content",
                           f"[Open this model in mlflow-cc]({app_url.rstrip('/')}/?{query})")
    except Exception as exc:
        model.fail(f"{type(exc).__name__}: {exc}")
        raise
    return model


def _experiment_id(client: MlflowClient, experiment: str | None) -> str:
    if experiment is None:
        from mlflow.tracking.fluent import _get_experiment_id

        return _get_experiment_id()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        # The MLflow 3 UI opens "model training" experiments on their runs table.
        return client.create_experiment(experiment, tags={EXPERIMENT_KIND_TAG: "custom_model_development"})
    if exp.lifecycle_stage == "deleted":
        raise LineageError(f"experiment {experiment!r} is deleted; restore it or use another name")
    return exp.experiment_id


def _check_source(client: MlflowClient, uri: str, src: str | ModelRun, *, what: str) -> str:
    """Return the run id of a parent/input after checking it exists here and is not deleted."""
    if isinstance(src, ModelRun):
        if src.tracking_uri != uri:
            raise LineageError(f"{what} {src.run_id} is in another tracking store ({src.tracking_uri}), "
                               f"not {uri}; lineage cannot cross stores")
        run_id = src.run_id
    elif isinstance(src, str) and src:
        run_id = src
    else:
        raise LineageError(f"{what} must be a run id or a ModelRun, not {src!r}")
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise LineageError(f"{what} run {run_id!r} not found in tracking store {uri} "
                           f"(is it in another store? set MLFLOW_TRACKING_URI): {exc.message}") from None
    if run.info.lifecycle_stage == "deleted":
        raise LineageError(f"{what} run {run_id!r} is deleted; restore it in the MLflow UI first")
    if run.data.tags.get(contract.TAG_KIND) == contract.KIND_DATASET:
        raise LineageError(f"{what} run {run_id!r} is a dataset run, not a model")
    return run_id


def _step_of(run: Any) -> int:
    try:
        return int(run.data.tags.get(contract.TAG_STEP, ""))
    except ValueError:
        # A plain MLflow parent without our step tag: one above its own parent, if any.
        return 1 if contract.TAG_PARENT in run.data.tags else 0
