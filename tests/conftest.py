"""Shared fixtures: real MLflow stores (sqlite, mlflow server on sqlite, on PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

from testing.local_server import (
    MlflowServer,
    create_postgres_database,
    drop_postgres_database,
    start_mlflow_server,
)


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> Iterator[str]:
    """A fresh sqlite tracking store in a temp folder, set as MLflow's tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    yield from _as_tracking_uri(uri, tmp_path)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on a sqlite backend with served artifacts, once per session."""
    work = tmp_path_factory.mktemp("mlflow-server")
    server = start_mlflow_server(f"sqlite:///{work / 'server.db'}", work)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on a fresh PostgreSQL database, once per session."""
    name, uri = create_postgres_database()
    work = tmp_path_factory.mktemp("mlflow-pg-server")
    server = start_mlflow_server(uri, work)
    yield server
    server.stop()
    drop_postgres_database(name)


def _as_tracking_uri(uri: str, tmp_path: Path) -> Iterator[str]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


@pytest.fixture(params=["sqlite", "server", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each of the three stores in turn, as MLflow's tracking URI."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        server = request.getfixturevalue("mlflow_server" if request.param == "server" else "postgres_server")
        uri = server.url
    yield from _as_tracking_uri(uri, tmp_path)


@pytest.fixture
def experiment_name(request: pytest.FixtureRequest) -> str:
    """A name unique to the test, so tests sharing a session server do not collide."""
    import uuid

    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A real headless Chromium (Debian's, via Playwright) for one test module.

    Module scope: Playwright's sync API allows one running instance per thread, so
    modules must not hold one open across the session.
    """
    from browser import launch

    b = launch()
    yield b
    b.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where browser tests leave screenshots for people to look at (gitignored)."""
    path = Path(__file__).resolve().parents[1] / "screenshots"
    path.mkdir(exist_ok=True)
    return path
