"""Sign-in and per-user reading for the app inside ``mlflow server --app-name compress-compare-auth``.

* :func:`require_mlflow_sign_in`: every request of the app is authenticated by MLflow's
  basic-auth app itself (``mlflow.server.auth.authenticate_request``): the same users and
  passwords, and the same browser prompt as the MLflow UI, whose credentials the browser
  already sends to every path of the origin. No second sign-in form, no session file.
* :class:`LoopbackUserSources`: each user reads through MLflow's REST API on the server's own
  socket with their own credentials (:func:`mlflow_cc.read.user_client.client_for_user`), so
  every read and every flag write passes MLflow's own permission checks, whichever rules
  (per-experiment grants, default permission, roles) the server is configured with.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import flask
from dash import Dash

from dash_app.auth import first_hook
from dash_app.sessions import Session
from dash_app.team_source import UserSources
from mlflow_cc.read.store_health import StoreHealth

#: Where the app reaches its own server's REST API (default: the socket the request came in on).
SERVER_URL_ENV = "MLFLOW_CC_SERVER_URL"


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


class LoopbackUserSources(UserSources):
    """:class:`UserSources` on the server's own REST API, its URL learned from the first request."""

    def __init__(self, static_prefix: str, health: StoreHealth, mlflow_ui_url: str | None = None) -> None:
        super().__init__("", health, mlflow_ui_url, snapshot=False)
        self._static_prefix = static_prefix

    def for_current_user(self) -> Any:
        if not self.tracking_uri and flask.has_request_context():
            self.tracking_uri = own_server_url(flask.request.environ, self._static_prefix)
            self.health.tracking_uri = self.tracking_uri
        return super().for_current_user()
