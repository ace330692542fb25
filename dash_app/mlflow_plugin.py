"""The app inside ``mlflow server``: the ``mlflow.app`` entry points.

``mlflow server --app-name compress-compare`` serves MLflow's UI and API as usual and this
app under ``<static prefix>/compress-compare/`` at the same origin. The app reads the
server's own backend store (the ``--backend-store-uri`` MLflow hands its app factory) with
no HTTP hop, and artifacts served by the server (``mlflow-artifacts:``) straight from the
server's ``--artifacts-destination``.

``mlflow server --app-name compress-compare-auth`` composes it with MLflow's basic-auth app:
the same users, passwords and permissions. The browser's basic-auth credentials for the
MLflow UI are sent to the app too (one origin), so signing in to one signs in to both; each
request is authenticated by MLflow's own ``authenticate_request``; the app reads the store
directly but only the experiments MLflow's own rules let that user read, and writes review
flags through MLflow's REST API as the user (:mod:`dash_app.mlflow_plugin_auth`).

Both work under MLflow's default uvicorn server (an ASGI app: MLflow's FastAPI wrapper of its
Flask app) and under ``--gunicorn-opts`` (the Flask app), and honour ``--static-prefix``.
Host names are checked by MLflow's own ``--allowed-hosts`` policy (its security middleware
is applied to the app too). ``MLFLOW_CC_APP_PREFIX`` changes the path (default
``/compress-compare``); ``MLFLOW_CC_EXPERIMENT`` and ``MLFLOW_CC_REFRESH_MS`` work as for
``mlflow-cc ui``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import flask
from dash import Dash
from mlflow.tracking import MlflowClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from dash_app import fast_start, store_status
from dash_app.app import create_app as create_dash_app
from dash_app.mlflow_plugin_auth import StoreUserSources, require_mlflow_sign_in
from dash_app.serving import (
    ENV_EXPERIMENT,
    ENV_REFRESH_MS,
    LOOPBACK_HOSTS,
    HostAllowList,
)
from dash_app.team_source import ResilientSource
from mlflow_cc.artifacts.files import set_served_artifacts_destination
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.store_health import StoreHealth

PREFIX_ENV = "MLFLOW_CC_APP_PREFIX"
DEFAULT_PREFIX = "/compress-compare"
#: A path a tracking client asks to learn that the server serves the app (no sign-in needed).
PING_PATH = "/_mlflow_cc/ping"
# What `mlflow server` hands its app (names as in mlflow.server; stable since MLflow 1.x).
BACKEND_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"
ARTIFACTS_DESTINATION_ENV = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"
STATIC_PREFIX_ENV = "_MLFLOW_STATIC_PREFIX"
SGI_ENV = "_MLFLOW_SGI_NAME"


def app_path() -> str:
    """Where the app is mounted: ``--static-prefix`` + ``MLFLOW_CC_APP_PREFIX`` (no trailing slash)."""
    static = os.environ.get(STATIC_PREFIX_ENV, "").rstrip("/")
    prefix = "/" + (os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX).strip("/")
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
        raise ValueError(f"{PREFIX_ENV} must be a path such as /compress-compare, not {prefix!r}")
    return static + prefix


def create_app(app: flask.Flask | None = None) -> Any:
    """``mlflow.app`` factory ``compress-compare``: MLflow's server with this app mounted."""
    from mlflow.server import app as mlflow_app

    flask_app = app or mlflow_app
    mount(flask_app, auth=False)
    if os.environ.get(SGI_ENV) == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(flask_app)
    return flask_app


def create_auth_app(app: flask.Flask | None = None) -> Any:
    """``mlflow.app`` factory ``compress-compare-auth``: the same, composed with MLflow's basic-auth app."""
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as create_basic_auth_app

    flask_app = app or mlflow_app
    mount(flask_app, auth=True)
    return create_basic_auth_app(flask_app)  # FastAPI under uvicorn, the Flask app otherwise


def mount(flask_app: flask.Flask, *, auth: bool) -> Dash:
    """Serve the Dash app under :func:`app_path` of ``flask_app`` (before MLflow's own routes)."""
    path = app_path()
    dash = build_plugin_app(path, auth=auth)
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {path: dash.server.wsgi_app})
    return dash


def build_plugin_app(path: str, *, auth: bool) -> Dash:
    """The Dash app for a mount path, reading the server's stores (per user when ``auth``)."""
    backend = os.environ.get(BACKEND_STORE_ENV)
    if not backend:
        raise RuntimeError(f"{BACKEND_STORE_ENV} is not set: start this app with `mlflow server --app-name ...`")
    set_served_artifacts_destination(os.environ.get(ARTIFACTS_DESTINATION_ENV))
    static = os.environ.get(STATIC_PREFIX_ENV, "").rstrip("/")
    ui_url = static + "/"  # run links stay on this origin
    health = StoreHealth(backend)
    source: Any
    if auth:
        source = StoreUserSources(backend, static, health, ui_url)
    else:
        client = MlflowClient(backend)
        source = ResilientSource(lambda exp: ExperimentReader(exp, client=client, snapshot=False), client, health,
                                 ui_url)
        if os.environ.get(ENV_EXPERIMENT):
            source.default_experiment = os.environ[ENV_EXPERIMENT]
    dash = create_dash_app(source=source, chrome=[store_status],
                           refresh_ms=int(os.environ.get(ENV_REFRESH_MS) or 3000),
                           routes_pathname_prefix="/", requests_pathname_prefix=path + "/")
    server: flask.Flask = dash.server
    server.add_url_rule(PING_PATH, "mlflow_cc_ping", lambda: flask.jsonify(app="mlflow-cc", path=path + "/"))
    if auth:
        require_mlflow_sign_in(dash, open_paths={PING_PATH})
    _check_hosts(server)
    fast_start.warm_up(dash)
    return dash


def _check_hosts(server: flask.Flask) -> None:
    """MLflow's own Host allow-list and CORS rules (``--allowed-hosts``) on the app's paths too."""
    try:
        from mlflow.server.security import init_security_middleware
    except ImportError:  # an MLflow without host checks: keep ours (loopback names only)
        server.wsgi_app = HostAllowList(server.wsgi_app, LOOPBACK_HOSTS)
        return
    init_security_middleware(server)
