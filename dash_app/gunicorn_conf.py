"""gunicorn settings for the app: ``gunicorn -c python:dash_app.gunicorn_conf dash_app.wsgi:server``.

Read from the environment (see :mod:`dash_app.serving`): ``MLFLOW_CC_BIND``
(default 127.0.0.1:8050), ``MLFLOW_CC_WORKERS`` (default 4). Workers are processes
with a few threads each; they share the reader snapshots and sign-in sessions on disk
(``MLFLOW_CC_CACHE_DIR``). Before any worker starts, a non-loopback bind without
sign-in is refused (:func:`dash_app.serving.check_bind`), and so is a weak
``MLFLOW_CC_SECRET_KEY`` (:func:`dash_app.sessions.check_secret`).
"""

from __future__ import annotations

import os
from typing import Any

from dash_app.serving import (
    ENV_BIND,
    ENV_WORKERS,
    Settings,
    UnsafeBindError,
    check_bind,
)
from dash_app.sessions import SECRET_ENV, check_secret

bind = [os.environ.get(ENV_BIND, "127.0.0.1:8050")]
workers = int(os.environ.get(ENV_WORKERS, "4"))
worker_class = "gthread"
threads = 4
timeout = 120
graceful_timeout = 20
# Access log lines hold method, path and status: no credentials are ever in a URL.
accesslog = "-"


def on_starting(server: Any) -> None:
    """Check every bind address and the secret key before the workers start (gunicorn hook)."""
    try:
        settings = Settings.from_env()
        if os.environ.get(SECRET_ENV):
            check_secret(os.environ[SECRET_ENV])
    except ValueError as exc:  # a weak secret key, a bad setting: say so once, start nothing
        server.log.error("%s", exc)
        raise SystemExit(2) from None
    for address in server.cfg.bind:
        host = address.rsplit(":", 1)[0] if ":" in address and not address.startswith("unix:") else "127.0.0.1"
        try:
            check_bind(host, auth=settings.auth, allow_remote=settings.allow_remote)
        except UnsafeBindError as exc:
            server.log.error("%s", exc)
            raise SystemExit(2) from None
