"""Is the tracking store reachable? Short HTTP timeouts for the app, and a shared health state.

The app must notice a tracking server that went away within seconds, not after
MLflow's default of 7 retries with exponential backoff (minutes, right for a training
job that must not lose a metric). :func:`configure_app_http` sets short defaults for
the app process only (environment variables MLflow reads on every request; explicit
settings win). :class:`StoreHealth` remembers the last failure so the app can say
"store unreachable, retrying" and keep showing what it had read.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

import requests
from mlflow.exceptions import MlflowException

#: The app's HTTP defaults: one retry, 5 s timeout, short backoff.
APP_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
                     "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2"}
#: Words in MLflow's error messages that mean "no answer", not "the answer is no".
_UNREACHABLE_HINTS = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
                      "Read timed out", "Connection aborted", "RemoteDisconnected", "too many 50",
                      "error code 502", "error code 503", "error code 504")


def configure_app_http() -> None:
    """Short MLflow HTTP timeouts and retries for this (app) process, unless already set."""
    for key, value in APP_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means the store did not answer (as opposed to refusing or failing a request)."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, MlflowException):
        text = str(exc)
        return exc.error_code == "TEMPORARILY_UNAVAILABLE" or any(h in text for h in _UNREACHABLE_HINTS)
    return False


class StoreHealth:
    """The last known state of one tracking store; thread-safe."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.last_error = ""

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def mark_down(self, exc: BaseException | str) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = time.time()
            self.last_error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__

    def mark_up(self) -> None:
        with self._lock:
            self.down_since = None
            self.last_error = ""

    def check(self, timeout_s: float = 5.0) -> bool:
        """Ping the server's ``/health`` (http stores; local stores are always up); updates the state."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            self.mark_up()
            return True
        try:
            with urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
                ok = resp.status == 200
        except (urllib.error.URLError, OSError) as exc:
            self.mark_down(f"no answer from {self.tracking_uri}: {getattr(exc, 'reason', exc)}")
            return False
        if ok:
            self.mark_up()
        else:
            self.mark_down(f"{self.tracking_uri}/health answered {resp.status}")
        return ok
