"""WSGI entry point for production servers: ``gunicorn -c python:dash_app.gunicorn_conf dash_app.wsgi:server``.

Configured by environment variables (:mod:`dash_app.serving`): ``MLFLOW_TRACKING_URI``,
``MLFLOW_CC_AUTH`` ("mlflow" to sign users in with their MLflow accounts),
``MLFLOW_CC_EXPERIMENT``, ``MLFLOW_CC_MLFLOW_UI_URL``, ``MLFLOW_CC_REFRESH_MS``,
``MLFLOW_CC_CACHE_DIR`` (reader snapshots and sessions, shared by the workers) and
``MLFLOW_CC_SECRET_KEY`` (weak or example values are refused), ``MLFLOW_CC_SESSION_MAX_AGE``,
``MLFLOW_CC_ALLOWED_HOSTS`` and ``MLFLOW_CC_TRUST_PROXY``. The app's MLflow HTTP requests get short timeouts and one
retry (:func:`mlflow_cc.read.store_health.configure_app_http`), so a tracking server that
goes away shows as "store unreachable, retrying" within seconds.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow
from dash import Dash
from mlflow.tracking import MlflowClient

from dash_app import fast_start, store_status
from dash_app.app import create_app
from dash_app.auth import install_auth
from dash_app.serving import Settings, protect
from dash_app.sessions import SECRET_ENV, SessionStore, check_secret
from dash_app.team_source import ResilientSource, UserSources
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.store_health import StoreHealth, configure_app_http


def build_app(settings: Settings | None = None, *, sessions: SessionStore | None = None,
              **dash_kwargs: Any) -> Dash:
    """The app for a team deployment (one process; gunicorn runs several)."""
    settings = settings or Settings.from_env()
    if os.environ.get(SECRET_ENV):
        check_secret(os.environ[SECRET_ENV])  # at startup, in either mode: never run on an example secret
    configure_app_http()
    uri = settings.tracking_uri or mlflow.get_tracking_uri()
    health = StoreHealth(uri)
    source: Any
    if settings.auth == "mlflow":
        if not uri.startswith(("http://", "https://")):
            raise ValueError(f"MLFLOW_CC_AUTH=mlflow needs an mlflow server tracking URI (http...), not {uri}")
        source = UserSources(uri, health, settings.mlflow_ui_url)
    else:
        client = MlflowClient(uri)
        source = ResilientSource(lambda exp: ExperimentReader(exp, client=client, snapshot=True), client, health,
                                 settings.mlflow_ui_url)
        if settings.experiment:
            source.reader(settings.experiment)
    app = create_app(source=source, chrome=[store_status], refresh_ms=settings.refresh_ms, **dash_kwargs)
    if settings.auth == "mlflow":
        install_auth(app, uri, sessions)
    protect(app.server, settings)  # the Host allow-list, and ProxyFix when trusted
    fast_start.warm_up(app, page_files=settings.auth != "mlflow")  # no sign-in; the Host check wraps it
    return app


def __getattr__(name: str) -> Any:
    """``server`` (and ``app``) are built on first use, so importing this module has no side effects."""
    if name in ("app", "server"):
        app = build_app()
        globals().update(app=app, server=app.server)
        return globals()[name]
    raise AttributeError(name)
