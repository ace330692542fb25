"""How the app is served: the environment variables it reads, and the rule about binding.

Without sign-in the app serves whoever reaches its port with the data of the app
process's own MLflow credentials, so it stays on 127.0.0.1 unless told otherwise
explicitly. With ``MLFLOW_CC_AUTH=mlflow`` every user signs in with their MLflow
account (see :mod:`dash_app.auth`) and binding a network interface is fine.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

#: Environment variables of a deployment (``mlflow-cc ui`` sets them from its options).
ENV_AUTH = "MLFLOW_CC_AUTH"  # "mlflow" (sign in with MLflow accounts) or "none" (default)
ENV_ALLOW_REMOTE = "MLFLOW_CC_ALLOW_REMOTE"  # "1": serve a non-loopback host without sign-in anyway
ENV_EXPERIMENT = "MLFLOW_CC_EXPERIMENT"  # experiment opened first (name or id)
ENV_UI_URL = "MLFLOW_CC_MLFLOW_UI_URL"  # base of links to the MLflow UI
ENV_REFRESH_MS = "MLFLOW_CC_REFRESH_MS"  # how often pages ask for new runs
ENV_BIND = "MLFLOW_CC_BIND"  # gunicorn: host:port (default 127.0.0.1:8050)
ENV_WORKERS = "MLFLOW_CC_WORKERS"  # gunicorn: worker processes (default 4)


class UnsafeBindError(Exception):
    """The app was asked to serve the network without sign-in."""


@dataclass(frozen=True)
class Settings:
    """A deployment's settings, read from the environment."""

    tracking_uri: str | None
    auth: str
    allow_remote: bool
    experiment: str | None
    mlflow_ui_url: str | None
    refresh_ms: int

    @classmethod
    def from_env(cls) -> Settings:
        auth = (os.environ.get(ENV_AUTH) or "none").strip().lower()
        if auth not in ("none", "mlflow"):
            raise ValueError(f"{ENV_AUTH} must be 'mlflow' or 'none', not {auth!r}")
        return cls(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None, auth=auth,
                   allow_remote=os.environ.get(ENV_ALLOW_REMOTE, "") in ("1", "true", "yes"),
                   experiment=os.environ.get(ENV_EXPERIMENT) or None,
                   mlflow_ui_url=os.environ.get(ENV_UI_URL) or None,
                   refresh_ms=int(os.environ.get(ENV_REFRESH_MS) or 3000))


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for 0.0.0.0 and real interfaces."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, *, auth: str, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` without sign-in, unless ``allow_remote``; says why."""
    if auth == "mlflow" or allow_remote or is_loopback(host):
        return
    raise UnsafeBindError(
        f"refusing to serve on {host}: without sign-in anyone who reaches this port reads the tracking "
        f"store with this process's MLflow credentials. Sign users in with their MLflow accounts "
        f"(--auth mlflow / {ENV_AUTH}=mlflow, against `mlflow server --app-name basic-auth`), bind "
        f"127.0.0.1, or, on a network you trust, force it with --allow-remote / {ENV_ALLOW_REMOTE}=1.")


def gunicorn_env(*, host: str, port: int, workers: int, auth: str, allow_remote: bool,
                 tracking_uri: str | None = None, experiment: str | None = None,
                 mlflow_ui_url: str | None = None) -> dict[str, str]:
    """The environment of a gunicorn-served app with these settings (added to the current one)."""
    env = {ENV_AUTH: auth, ENV_BIND: f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
           ENV_WORKERS: str(workers), ENV_ALLOW_REMOTE: "1" if allow_remote else ""}
    for key, value in (("MLFLOW_TRACKING_URI", tracking_uri), (ENV_EXPERIMENT, experiment),
                       (ENV_UI_URL, mlflow_ui_url)):
        if value:
            env[key] = value
    return env


def exec_gunicorn(env: dict[str, str]) -> None:
    """Replace this process with gunicorn serving ``dash_app.wsgi:server`` (never returns)."""
    import shutil
    import sys

    exe = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")
    if exe is None:
        raise RuntimeError("several workers and sign-in need gunicorn: pip install gunicorn")
    os.execve(exe, [exe, "-c", "python:dash_app.gunicorn_conf", "dash_app.wsgi:server"], {**os.environ, **env})
