"""Sign-in and per-user reading for the app inside ``mlflow server --app-name compress-compare-auth``.

* :func:`require_mlflow_sign_in`: every request of the app is authenticated by MLflow's
  basic-auth app itself (``mlflow.server.auth.authenticate_request``): the same users and
  passwords, and the same browser prompt as the MLflow UI, whose credentials the browser
  already sends to every path of the origin. No second sign-in form, no session file.
* :class:`StoreUserSources`: each user reads the server's backend store directly (no HTTP hop)
  through a :class:`PermittedClient`, which serves only the experiments MLflow's own permission
  rules let that user read (``mlflow.server.auth.filter_experiment_ids``: grants, default
  permission, roles); review flags are written through MLflow's REST API on the server's own
  socket as the user (:func:`mlflow_cc.read.user_client.client_for_user`), so MLflow checks them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import flask
from dash import Dash
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking import MlflowClient

from dash_app.auth import current_session, first_hook
from dash_app.sessions import Session
from dash_app.team_source import ResilientSource, UserSources
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.store_health import StoreHealth
from mlflow_cc.read.user_client import client_for_user

#: Where the app reaches its own server's REST API (default: the socket the request came in on).
SERVER_URL_ENV = "MLFLOW_CC_SERVER_URL"
#: Seconds a user's read permission on an experiment, as MLflow answered it, is reused.
PERMISSION_TTL_S = 30.0


def require_mlflow_sign_in(app: Dash, open_paths: Iterable[str] = ()) -> None:
    """Answer every request of ``app`` as MLflow's basic-auth app would; set the request's user."""
    from mlflow.server.auth import authenticate_request

    open_set = frozenset(open_paths)

    def _sign_in() -> Any:
        flask.g.cc_session = None
        if flask.request.path in open_set:
            return None
        result = authenticate_request()
        if isinstance(result, flask.Response):
            return result  # 401 with MLflow's WWW-Authenticate: the browser asks for the MLflow sign-in
        password = getattr(result, "password", None)
        if not password:
            return flask.Response("compress-compare-auth needs MLflow's basic-auth sign-in", 501)
        flask.g.cc_session = Session(result.username, password)
        return None

    first_hook(app, _sign_in)


def own_server_url(environ: dict[str, Any], static_prefix: str) -> str:
    """The MLflow server's own URL as reached from inside it (loopback for a wildcard bind)."""
    if os.environ.get(SERVER_URL_ENV):
        return os.environ[SERVER_URL_ENV].rstrip("/")
    sock = environ.get("gunicorn.socket")
    if sock is not None:  # gunicorn: the listening address (its SERVER_NAME comes from the Host header)
        host, port = sock.getsockname()[:2]
    else:  # uvicorn: the ASGI scope's server address
        host, port = environ.get("SERVER_NAME", "127.0.0.1"), environ.get("SERVER_PORT", "5000")
    host = str(host)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{static_prefix}"


class PermittedClient(MlflowClient):
    """One user's client on the server's own backend store, limited to what MLflow lets them read.

    Readable experiments are MLflow's own answer (``mlflow.server.auth.filter_experiment_ids``,
    asked in the user's request, whose basic-auth header names them), cached for
    :data:`PERMISSION_TTL_S`; outside a request (background comparisons) the last answer stands
    and an experiment never asked about is refused. Reads go to the store directly; the rare
    writes (review flags) go through MLflow's REST API on the server's own socket as the user,
    so MLflow checks the write permission itself.
    """

    def __init__(self, backend_uri: str, username: str, writer: Any) -> None:
        super().__init__(backend_uri)
        self.username = username
        self._writer = writer  # () -> an MlflowClient on the server's REST API as this user
        self._allowed: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PermittedClient(username={self.username!r})"

    def may_read(self, experiment_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            known = self._allowed.get(experiment_id)
        if known is not None and (now - known[1] < PERMISSION_TTL_S or not flask.has_request_context()):
            return known[0]
        if not flask.has_request_context():
            return False  # never asked in a request of this user: refuse
        from mlflow.server.auth import filter_experiment_ids

        allowed = experiment_id in filter_experiment_ids([experiment_id])
        with self._lock:
            self._allowed[experiment_id] = (allowed, now)
        return allowed

    def _check(self, experiment_id: str) -> None:
        if not self.may_read(str(experiment_id)):
            raise MlflowException(f"Permission denied for user {self.username!r} on experiment {experiment_id}",
                                  PERMISSION_DENIED)

    def search_experiments(self, *args: Any, **kwargs: Any) -> Any:
        found = super().search_experiments(*args, **kwargs)
        return PagedList([e for e in found if self.may_read(e.experiment_id)], found.token)

    def get_experiment(self, experiment_id: str) -> Any:
        self._check(experiment_id)
        return super().get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Any:
        exp = super().get_experiment_by_name(name)
        if exp is not None:
            self._check(exp.experiment_id)
        return exp

    def search_runs(self, experiment_ids: Any, *args: Any, **kwargs: Any) -> Any:
        for exp_id in [experiment_ids] if isinstance(experiment_ids, str) else experiment_ids:
            self._check(exp_id)
        return super().search_runs(experiment_ids, *args, **kwargs)

    def get_run(self, run_id: str) -> Any:
        run = super().get_run(run_id)
        self._check(run.info.experiment_id)
        return run

    def list_artifacts(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        self.get_run(run_id)
        return super().list_artifacts(run_id, *args, **kwargs)

    def download_artifacts(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        self.get_run(run_id)
        return super().download_artifacts(run_id, *args, **kwargs)

    def set_tag(self, run_id: str, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        return self._writer().set_tag(run_id, key, value, *args, **kwargs)

    def delete_tag(self, run_id: str, key: str) -> Any:
        return self._writer().delete_tag(run_id, key)


class StoreUserSources(UserSources):
    """:class:`UserSources` reading the server's backend store as each user (:class:`PermittedClient`)."""

    def __init__(self, backend_uri: str, static_prefix: str, health: StoreHealth,
                 mlflow_ui_url: str | None = None) -> None:
        super().__init__(backend_uri, health, mlflow_ui_url, snapshot=False)
        self._static_prefix = static_prefix
        self._server_url = ""

    def for_current_user(self) -> Any:
        session = current_session()
        if session is None:
            raise PermissionError("not signed in")
        if not self._server_url:
            self._server_url = own_server_url(flask.request.environ, self._static_prefix)
        key = hashlib.sha256(f"{session.username}\0{session.password}".encode()).hexdigest()
        with self._lock:
            source = self._sources.get(key)
            if source is None:
                url, user, password = self._server_url, session.username, session.password
                client = PermittedClient(self.tracking_uri, user, lambda: client_for_user(url, user, password))
                source = ResilientSource(lambda exp, c=client: ExperimentReader(exp, client=c, snapshot=False),
                                         client, self.health, self._ui_url)
                self._sources[key] = source
            return source
