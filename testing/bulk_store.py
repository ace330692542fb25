"""A large synthetic experiment written straight into an MLflow SQL store (seconds, not hours).

``build_random_forest`` in :mod:`testing.synthetic` writes through MLflow's client, three calls
per model: fine for hundreds, an hour for 50,000. :func:`bulk_random_forest` writes the same
models (the same generator, tags, metrics and params as the client would store) with MLflow's
own SQLAlchemy store creating the schema and the experiment, then one multi-row insert per
table. What is read back goes through MLflow's normal read paths.

:func:`cached_store` keeps a built store in a cache folder keyed by size and generator version,
so a benchmark or a test builds the 50,000-model store once per machine.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from mlflow_cc import contract
from testing.synthetic import random_models

#: Bump when the generator or the rows written change: cached stores are rebuilt.
STORE_VERSION = 1
#: Rows per INSERT statement batch.
CHUNK = 20_000


def bulk_random_forest(uri: str, experiment: str, n: int, *, max_depth: int = 6, roots: int = 4,
                       seed: int = 0) -> list[str]:
    """Write :func:`testing.synthetic.random_models` into the SQL store at ``uri`` (created if needed).

    A new experiment ``experiment`` (it must not exist) holds ``n`` finished runs named
    ``model-<i>``. Returns the run ids in creation order.
    """
    from mlflow.entities import LifecycleStage, RunStatus
    from mlflow.store.tracking.dbmodels import models as db
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, str(Path(uri.split("///", 1)[-1]).parent / "artifacts")
                            if uri.startswith("sqlite:") else None)
    exp_id = store.create_experiment(experiment)
    location = store.get_experiment(exp_id).artifact_location
    t0 = int(time.time() * 1000)
    runs, tags, metrics, latest, params = [], [], [], [], []
    ids: list[str] = []
    user = os.environ.get("USER", "synthetic")
    for m in random_models(n, max_depth=max_depth, roots=roots, seed=seed):
        rid = uuid.uuid4().hex
        ids.append(rid)
        name = f"model-{m.index}"
        runs.append({"run_uuid": rid, "name": name, "source_type": "LOCAL", "source_name": "",
                     "entry_point_name": "", "user_id": user, "status": RunStatus.to_string(RunStatus.FINISHED),
                     "start_time": t0 + m.index, "end_time": t0 + m.index + 1, "deleted_time": None,
                     "source_version": "", "lifecycle_stage": LifecycleStage.ACTIVE,
                     "artifact_uri": f"{location}/{rid}/artifacts", "experiment_id": int(exp_id)})
        run_tags = {"mlflow.runName": name, "mlflow.user": user, "note": "synthetic",
                    contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION), contract.TAG_KIND: contract.KIND_MODEL,
                    contract.TAG_STEP: str(m.step)}
        if m.parent is not None and m.spec is not None:
            run_tags.update({contract.TAG_PARENT: ids[m.parent], contract.TAG_OPERATION: m.spec.operation,
                             contract.TAG_OPERATION_PARAMS: json.dumps(m.spec.params, sort_keys=True)})
            params.extend({"key": contract.PARAM_OPERATION_PREFIX + k, "value": str(v), "run_uuid": rid}
                          for k, v in m.spec.params.items())
        tags.extend({"key": k, "value": v, "run_uuid": rid} for k, v in run_tags.items())
        for k, v in m.metrics.items():
            row = {"key": k, "value": float(v), "timestamp": t0, "step": 0, "is_nan": False, "run_uuid": rid}
            metrics.append(row)
            latest.append(row)
    with store.engine.begin() as conn:
        for table, rows in ((db.SqlRun, runs), (db.SqlTag, tags), (db.SqlParam, params),
                            (db.SqlMetric, metrics), (db.SqlLatestMetric, latest)):
            for i in range(0, len(rows), CHUNK):
                conn.execute(table.__table__.insert(), rows[i:i + CHUNK])
    store.engine.dispose()
    return ids


def seed_snapshot(uri: str, experiment: str, directory: Path) -> int:
    """Save the reader snapshot of ``experiment`` into ``directory`` as the app's reader would.

    The rows are read back in bulk (plain SQL), turned into MLflow ``Run`` entities and then into
    model nodes by the reader's own :func:`~mlflow_cc.read.reader.node_from_run`; a reader opened
    with this snapshot asks the store only for what is newer. Returns the number of nodes.
    """
    from collections import defaultdict

    import sqlalchemy as sa
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
    from mlflow.tracking import MlflowClient

    from mlflow_cc.read.reader import node_from_run
    from mlflow_cc.read.snapshot import Snapshot, SnapshotStore, user_identity

    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    engine = sa.create_engine(uri)
    tags: dict[str, list[RunTag]] = defaultdict(list)
    params: dict[str, list[Param]] = defaultdict(list)
    metrics: dict[str, list[Metric]] = defaultdict(list)
    with engine.connect() as conn:
        runs = conn.execute(sa.text(
            "SELECT run_uuid, name, user_id, status, start_time, end_time, lifecycle_stage, artifact_uri "
            "FROM runs WHERE experiment_id = :e AND lifecycle_stage = 'active'"), {"e": int(exp_id)}).all()
        sub = "(SELECT run_uuid FROM runs WHERE experiment_id = :e)"
        for k, v, r in conn.execute(sa.text(f"SELECT key, value, run_uuid FROM tags WHERE run_uuid IN {sub}"),
                                    {"e": int(exp_id)}):
            tags[r].append(RunTag(k, v))
        for k, v, r in conn.execute(sa.text(f"SELECT key, value, run_uuid FROM params WHERE run_uuid IN {sub}"),
                                    {"e": int(exp_id)}):
            params[r].append(Param(k, v))
        for k, v, ts, step, r in conn.execute(sa.text(
                f"SELECT key, value, timestamp, step, run_uuid FROM latest_metrics WHERE run_uuid IN {sub}"),
                {"e": int(exp_id)}):
            metrics[r].append(Metric(k, v, ts, step))
    engine.dispose()
    nodes = []
    for rid, name, user, status, start, end, stage, art in runs:
        info = RunInfo(rid, exp_id, user, status, start, end, stage, artifact_uri=art, run_name=name)
        node = node_from_run(Run(info, RunData(metrics=metrics[rid], params=params[rid], tags=tags[rid])))
        if node is not None:
            nodes.append(node)
    SnapshotStore(directory).save(client.tracking_uri, exp_id, user_identity(client),
                                  Snapshot(nodes, {}, max((n.start_time for n in nodes), default=-1)))
    return len(nodes)


def cache_root() -> Path:
    """Where built stores are kept: ``MLFLOW_CC_BENCH_CACHE`` or ``~/.cache/mlflow-cc-bench``."""
    return Path(os.environ.get("MLFLOW_CC_BENCH_CACHE") or Path.home() / ".cache" / "mlflow-cc-bench")


def cached_store(n: int, experiment: str, root: Path | None = None) -> str:
    """The tracking URI of a sqlite store holding ``experiment`` with ``n`` random models, built once.

    Built into a temporary folder and renamed into place, so an interrupted build is never reused.
    """
    folder = (root or cache_root()) / f"forest-{n}-v{STORE_VERSION}-{experiment}"
    db_path = folder / "mlflow.db"
    if not db_path.exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        bulk_random_forest(f"sqlite:///{tmp / 'mlflow.db'}", experiment, n)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return f"sqlite:///{db_path}"
