"""The team benchmark's PostgreSQL store: ``runs`` model runs in ``team-bench``, bulk-written once and reused.

Writing 50,000 runs through the tracking API takes hours; these are inserted straight
into MLflow's own tables through its SQLAlchemy models (``SqlRun``, ``SqlTag``,
``SqlParam``, ``SqlMetric``, ``SqlLatestMetric``), with exactly the rows
``testing.synthetic.build_random_forest`` makes through the API (same tags, params,
metrics, statuses), after MLflow created the schema and the experiment. The database
is named after the size (``mlflowcc_bench_team_r<runs>_v<version>``) and kept: a later
run with the same ``--runs`` finds it (``ready`` marker in the experiment's tags) and
skips the build.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from mlflow.tracking import MlflowClient

from mlflow_cc import contract

EXPERIMENT = "team-bench"
#: Bumped when the rows written change (databases of older versions are not reused).
STORE_VERSION = 1
READY_TAG = "mlflow_cc.bench.ready"
CHUNK = 5000
ARTIFACTS = "/tmp/mlflow-cc-bench/team-artifacts"


def database_name(runs: int) -> str:
    return f"mlflowcc_bench_team_r{runs}_v{STORE_VERSION}"


def cached_team_store(runs: int, host: str = "127.0.0.1", user: str = "postgres") -> str:
    """The URI of a PostgreSQL database holding ``runs`` runs in ``team-bench``; built if needed."""
    import psycopg2

    name = database_name(runs)
    uri = f"postgresql+psycopg2://{user}@{host}:5432/{name}"
    conn = psycopg2.connect(host=host, user=user, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        exists = cur.fetchone() is not None
    if exists and _is_ready(uri):
        conn.close()
        return uri
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
        # a benchmark database: durability of each commit is not needed
        cur.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    conn.close()
    t = time.perf_counter()
    client = MlflowClient(uri)  # creates MLflow's schema
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=ARTIFACTS)
    bulk_insert_runs(uri, exp_id, runs)
    client.set_experiment_tag(exp_id, READY_TAG, str(runs))
    print(f"built {runs} runs into {uri} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return uri


def _is_ready(uri: str) -> bool:
    try:
        exp = MlflowClient(uri).get_experiment_by_name(EXPERIMENT)
    except Exception:  # noqa: BLE001 - a half-built database is rebuilt
        return False
    return exp is not None and READY_TAG in exp.tags


def bulk_insert_runs(uri: str, exp_id: str, runs: int, *, seed: int = 0) -> list[str]:
    """Insert :func:`testing.synthetic.random_models` as FINISHED runs, as the tracking API writes them."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from testing.synthetic import random_models

    store = SqlAlchemyStore(uri, ARTIFACTS)
    artifact_root = store.get_experiment(exp_id).artifact_location.rstrip("/")
    t0 = int(time.time() * 1000) - runs
    ids: list[str] = []
    rows: dict[str, list[dict[str, object]]] = {"runs": [], "tags": [], "params": [], "metrics": []}
    tables = {"runs": SqlRun.__table__, "tags": SqlTag.__table__, "params": SqlParam.__table__,
              "metrics": SqlMetric.__table__}

    def flush() -> None:
        with store.ManagedSessionMaker() as session:
            for kind, table in tables.items():
                if rows[kind]:
                    session.execute(table.insert(), rows[kind])
            if rows["metrics"]:
                session.execute(SqlLatestMetric.__table__.insert(), rows["metrics"])
        for kind in rows:
            rows[kind] = []

    for m in random_models(runs, max_depth=6, roots=4, seed=seed):
        run_id = uuid.uuid4().hex
        start = t0 + m.index
        tags = {contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION), contract.TAG_KIND: contract.KIND_MODEL,
                contract.TAG_STEP: str(m.step), "mlflow.runName": f"model-{m.index}", "note": "synthetic"}
        params: dict[str, object] = {}
        if m.parent is not None and m.spec is not None:
            tags.update({contract.TAG_PARENT: ids[m.parent], contract.TAG_OPERATION: m.spec.operation,
                         contract.TAG_OPERATION_PARAMS: json.dumps(m.spec.params, sort_keys=True)})
            params = {contract.PARAM_OPERATION_PREFIX + k: v for k, v in m.spec.params.items()}
        rows["runs"].append({"run_uuid": run_id, "name": f"model-{m.index}", "source_type": "LOCAL",
                             "source_name": "", "entry_point_name": "", "user_id": "bench", "status": "FINISHED",
                             "start_time": start, "end_time": start + 1, "deleted_time": None,
                             "source_version": "", "lifecycle_stage": "active",
                             "artifact_uri": f"{artifact_root}/{run_id}/artifacts", "experiment_id": int(exp_id)})
        rows["tags"] += [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]
        rows["params"] += [{"key": k, "value": str(v), "run_uuid": run_id} for k, v in params.items()]
        rows["metrics"] += [{"key": k, "value": float(v), "timestamp": start, "step": 0, "is_nan": False,
                             "run_uuid": run_id} for k, v in m.metrics.items()]
        ids.append(run_id)
        if len(rows["runs"]) >= CHUNK:
            flush()
    flush()
    return ids
