"""Where a run's description links to the app (the ``[Open this model in mlflow-cc]`` note).

``MLFLOW_CC_APP_URL`` when set; otherwise, for a tracking server that serves the app itself
(``mlflow server --app-name compress-compare``), the app's path on that server, learned once
per process and server from the app's ping path; otherwise no link.
"""

from __future__ import annotations

import functools
import os

import requests

APP_URL_ENV = "MLFLOW_CC_APP_URL"
#: The app's mount path and ping (as served by :mod:`dash_app.mlflow_plugin`).
SERVED_APP_PATH = "/compress-compare"
PING_PATH = "/_mlflow_cc/ping"


def app_url(tracking_uri: str) -> str | None:
    """The app's URL for runs logged to ``tracking_uri`` (None: no link)."""
    configured = os.environ.get(APP_URL_ENV)
    if configured:
        return configured.rstrip("/")
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return _served_app(tracking_uri.rstrip("/"))


@functools.lru_cache(maxsize=32)
def _served_app(server: str) -> str | None:
    try:
        resp = requests.get(server + SERVED_APP_PATH + PING_PATH, timeout=5)
        if resp.status_code == 200 and resp.json().get("app") == "mlflow-cc":
            return server + SERVED_APP_PATH
    except (requests.RequestException, ValueError):
        pass
    return None
