"""Register a model of the tree in the MLflow Model Registry, with its lineage.

:func:`register_model` creates a model version of ``name`` (the registered model is created on
first use) whose source is, in order of preference:

1. the MLflow 3 logged model linked to the run (``mlflow.pytorch.log_model`` inside the run, e.g.
   ``Capture(log_model=True)``): source ``models:/<model_id>``;
2. the run's effective weights artifact (:data:`~mlflow_cc.contract.ARTIFACT_WEIGHTS`);
3. the run's artifact root.

The version carries its provenance as tags (keys in :mod:`mlflow_cc.contract` style):

- ``mlflow_cc.lineage``: JSON list, base first, of ``{"run_id", "name", "operation", "params"}``
  (``operation`` null for the base);
- ``mlflow_cc.lineage_text``: the same in words, ``cnn → prune 90% magnitude → quantize int8 dynamic``
  (also the version's description);
- ``mlflow_cc.metric.<name>``: the run's primary metrics (those the experiment marks primary with
  :func:`~mlflow_cc.track.tracking.set_metric_info`; every metric when none is), as text;
- ``mlflow_cc.run_id``, ``mlflow_cc.experiment_id``, ``mlflow_cc.source_kind`` (``logged_model``,
  ``weights`` or ``run_artifacts``).

``alias`` (e.g. ``candidate``) is pointed at the new version. The writes are made with the
client given: in the app, the signed-in user's own client, so MLflow's permissions decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from mlflow_cc import contract
from mlflow_cc.errors import LineageError
from mlflow_cc.metric_info import parse_experiment_tags
from mlflow_cc.read.op_words import operation_text

TAG_LINEAGE = contract.PREFIX + "lineage"
TAG_LINEAGE_TEXT = contract.PREFIX + "lineage_text"
TAG_RUN_ID = contract.PREFIX + "run_id"
TAG_EXPERIMENT_ID = contract.PREFIX + "experiment_id"
TAG_SOURCE_KIND = contract.PREFIX + "source_kind"
TAG_METRIC_PREFIX = contract.PREFIX + "metric."
#: MLflow's limit on a tag value (the lineage JSON is cut to its last models beyond it).
MAX_TAG_VALUE = 8000
MAX_DEPTH = 500


@dataclass(frozen=True)
class Registration:
    """A model version created by :func:`register_model`."""

    name: str
    version: str
    alias: str | None
    source: str
    source_kind: str
    lineage_text: str
    tags: dict[str, str]


def lineage(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """The run's path from its base model: ``[{"run_id", "name", "operation", "params"}]``, base first."""
    path: list[dict[str, Any]] = []
    seen: set[str] = set()
    current: str | None = run_id
    while current is not None:
        if current in seen or len(path) >= MAX_DEPTH:
            raise LineageError(f"run {run_id}: its parents form a cycle or a chain over {MAX_DEPTH} models")
        seen.add(current)
        run = client.get_run(current)
        tags = run.data.tags
        try:
            params = json.loads(tags.get(contract.TAG_OPERATION_PARAMS, "{}"))
        except ValueError:
            params = {}
        path.append({"run_id": current, "name": run.info.run_name or current,
                     "operation": tags.get(contract.TAG_OPERATION), "params": params if isinstance(params, dict) else {}})
        current = tags.get(contract.TAG_PARENT) or None
    return path[::-1]


def lineage_words(path: list[dict[str, Any]]) -> str:
    """``cnn → prune 90% magnitude → quantize int8 dynamic``: the base's name, then each operation."""
    words = [path[0]["name"]] if path else []
    words += [operation_text(step["operation"], step["params"]) if step["operation"] else step["name"]
              for step in path[1:]]
    return " → ".join(words)


def register_model(run_id: str, name: str, *, alias: str | None = None, client: MlflowClient | None = None,
                   tracking_uri: str | None = None) -> Registration:
    """Register model run ``run_id`` as a new version of registered model ``name`` (see the module doc).

    Raises :class:`LineageError` for a run that is not a model (a dataset run, a deleted run) and
    lets MLflow's own errors through (a bad name, ``PERMISSION_DENIED`` for a user who may not write).
    """
    client = client or MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    name = str(name).strip()
    if not name:
        raise ValueError("a registered model needs a name")
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":
        raise LineageError(f"run {run_id} is deleted")
    if run.data.tags.get(contract.TAG_KIND) == contract.KIND_DATASET:
        raise LineageError(f"run {run_id} is a dataset run, not a model")
    path = lineage(client, run_id)
    text = lineage_words(path)
    source, kind, model_id = _source(client, run)
    tags = {TAG_RUN_ID: run_id, TAG_EXPERIMENT_ID: run.info.experiment_id, TAG_SOURCE_KIND: kind,
            TAG_LINEAGE: _fit(path), TAG_LINEAGE_TEXT: text[:MAX_TAG_VALUE]}
    tags.update({TAG_METRIC_PREFIX + k: repr(v) for k, v in _primary_metrics(client, run).items()})
    try:
        client.create_registered_model(name, description="Registered from mlflow-cc")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, description=text[:5000],
                                          model_id=model_id)
    if model_id is not None:
        _link_logged_model(client, model_id, name, str(version.version))
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return Registration(name=name, version=str(version.version), alias=alias or None, source=source,
                        source_kind=kind, lineage_text=text, tags=tags)


def _source(client: MlflowClient, run: Any) -> tuple[str, str, str | None]:
    run_id = run.info.run_id
    try:
        models = client.search_logged_models([run.info.experiment_id],
                                             filter_string=f"source_run_id = '{run_id}'", max_results=10)
    except MlflowException:
        models = []
    if models:
        model = max(models, key=lambda m: m.creation_timestamp or 0)
        return f"models:/{model.model_id}", "logged_model", model.model_id
    folder = contract.ARTIFACT_WEIGHTS.rpartition("/")[0]
    try:
        listed = {a.path for a in client.list_artifacts(run_id, folder)}
    except (MlflowException, OSError):
        listed = set()
    root = run.info.artifact_uri.rstrip("/")
    if contract.ARTIFACT_WEIGHTS in listed:
        return f"{root}/{contract.ARTIFACT_WEIGHTS}", "weights", None
    return root, "run_artifacts", None


def _link_logged_model(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """List the version on the logged model, as ``mlflow.register_model`` does (the MLflow UI shows it)."""
    model = client.get_logged_model(model_id)
    versions = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(
        [*versions, {"name": name, "version": version}])})


def _primary_metrics(client: MlflowClient, run: Any) -> dict[str, float]:
    metrics = dict(run.data.metrics)
    infos, _ = parse_experiment_tags(client.get_experiment(run.info.experiment_id).tags)
    primary = [m for m in metrics if m in infos and infos[m].primary]
    keep = primary or sorted(metrics)[:50]
    return {k: metrics[k] for k in keep if contract.PARAM_NAME_RE.match(k)}


def _fit(path: list[dict[str, Any]]) -> str:
    """The lineage JSON within a tag's limit: the oldest steps are dropped first (base kept)."""
    steps = list(path)
    text = json.dumps(steps, sort_keys=True)
    while len(text) > MAX_TAG_VALUE and len(steps) > 2:
        steps.pop(1)
        text = json.dumps(steps, sort_keys=True)
    return text[:MAX_TAG_VALUE]
