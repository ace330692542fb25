"""How the app is served: the environment variables it reads, the rule about binding, the Host allow-list.

Without sign-in the app serves whoever reaches its port with the data of the app
process's own MLflow credentials, so it stays on 127.0.0.1 unless told otherwise
explicitly. With ``MLFLOW_CC_AUTH=mlflow`` every user signs in with their MLflow
account (see :mod:`dash_app.auth`) and binding a network interface is fine.

In both modes requests whose ``Host`` is not allowed are refused with 400
(:class:`HostAllowList`): a web page whose own name was re-pointed at 127.0.0.1 (DNS
rebinding) cannot use a visitor's browser to read a local app. Allowed: localhost,
127.0.0.1, ::1, the bind host, and ``MLFLOW_CC_ALLOWED_HOSTS`` / ``--allowed-hosts``
(any port; ``*.example.org`` for subdomains; ``*`` turns the check off).
Behind a TLS-terminating proxy, ``MLFLOW_CC_TRUST_PROXY=1`` (or the number of proxies)
applies werkzeug's ``ProxyFix`` to ``X-Forwarded-For`` and ``X-Forwarded-Proto``, so the
rate limit sees client addresses and cookies are marked Secure over https.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

#: Environment variables of a deployment (``mlflow-cc ui`` sets them from its options).
ENV_AUTH = "MLFLOW_CC_AUTH"  # "mlflow" (sign in with MLflow accounts) or "none" (default)
ENV_ALLOW_REMOTE = "MLFLOW_CC_ALLOW_REMOTE"  # "1": serve a non-loopback host without sign-in anyway
ENV_EXPERIMENT = "MLFLOW_CC_EXPERIMENT"  # experiment opened first (name or id)
ENV_UI_URL = "MLFLOW_CC_MLFLOW_UI_URL"  # base of links to the MLflow UI
ENV_REFRESH_MS = "MLFLOW_CC_REFRESH_MS"  # how often pages ask for new runs
ENV_BIND = "MLFLOW_CC_BIND"  # gunicorn: host:port (default 127.0.0.1:8050)
ENV_WORKERS = "MLFLOW_CC_WORKERS"  # gunicorn: worker processes (default 4)
ENV_ALLOWED_HOSTS = "MLFLOW_CC_ALLOWED_HOSTS"  # Host names served besides the loopback ones ("*": any)
ENV_TRUST_PROXY = "MLFLOW_CC_TRUST_PROXY"  # "1" (or a count): trust X-Forwarded-For/-Proto of that many proxies
#: Host names always allowed (with any port).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


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
    #: Host names allowed besides localhost/127.0.0.1/::1 and the bind host; ("*",) allows any.
    allowed_hosts: tuple[str, ...] = field(default=())
    bind_host: str = "127.0.0.1"
    #: Proxies in front of the app whose X-Forwarded-For/-Proto are trusted (0: none).
    trust_proxy: int = 0

    @classmethod
    def from_env(cls) -> Settings:
        auth = (os.environ.get(ENV_AUTH) or "none").strip().lower()
        if auth not in ("none", "mlflow"):
            raise ValueError(f"{ENV_AUTH} must be 'mlflow' or 'none', not {auth!r}")
        return cls(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None, auth=auth,
                   allow_remote=os.environ.get(ENV_ALLOW_REMOTE, "") in ("1", "true", "yes"),
                   experiment=os.environ.get(ENV_EXPERIMENT) or None,
                   mlflow_ui_url=os.environ.get(ENV_UI_URL) or None,
                   refresh_ms=int(os.environ.get(ENV_REFRESH_MS) or 3000),
                   allowed_hosts=parse_hosts(os.environ.get(ENV_ALLOWED_HOSTS)),
                   bind_host=bind_host(os.environ.get(ENV_BIND) or "127.0.0.1:8050"),
                   trust_proxy=parse_trust_proxy(os.environ.get(ENV_TRUST_PROXY)))


def parse_hosts(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """Host names from a comma- or space-separated list (or several such), lower case, ports dropped."""
    parts = [text] if isinstance(text, str) or text is None else list(text)
    out: list[str] = []
    for part in parts:
        for item in (part or "").replace(",", " ").split():
            host = item.strip().lower()
            out.append("*" if host == "*" else host_name(host))
    return tuple(dict.fromkeys(h for h in out if h))


def parse_trust_proxy(text: str | None) -> int:
    """``MLFLOW_CC_TRUST_PROXY``: "", "0", "false" -> 0; "1", "true", "yes" -> 1; "2" -> 2 proxies."""
    value = (text or "").strip().lower()
    if value in ("", "0", "false", "no"):
        return 0
    if value in ("true", "yes"):
        return 1
    if value.isdigit():
        return int(value)
    raise ValueError(f"{ENV_TRUST_PROXY} must be 0, 1 (or the number of proxies), not {text!r}")


def bind_host(bind: str) -> str:
    """The host of a gunicorn bind address (``host:port``, ``[v6]:port``; a unix socket: 127.0.0.1)."""
    if bind.startswith("unix:"):
        return "127.0.0.1"
    return host_name(bind) or "127.0.0.1"


def host_name(host: str) -> str:
    """The name of a ``Host`` header or bind address, lower case, without port, brackets or final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def allowed_host_names(settings: Settings) -> tuple[str, ...]:
    """What :class:`HostAllowList` lets through for these settings."""
    names = [*LOOPBACK_HOSTS, host_name(settings.bind_host), *settings.allowed_hosts]
    if host_name(settings.bind_host) in ("0.0.0.0", "::", ""):  # every interface: the machine's name too
        names.append(socket.gethostname().lower())
    return tuple(dict.fromkeys(n for n in names if n))


class HostAllowList:
    """WSGI middleware: 400 for a request whose ``Host`` is not one of ``allowed`` (any port)."""

    def __init__(self, app: Callable[..., Any], allowed: Iterable[str]) -> None:
        self.app = app
        allowed = list(allowed)
        self.any = "*" in allowed
        self.exact = frozenset(a for a in allowed if not a.startswith("*."))
        self.suffixes = tuple(a[1:] for a in allowed if a.startswith("*."))

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        name = host_name(host_header or "")
        return bool(name) and (name in self.exact or name.endswith(self.suffixes))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        if self.allows(host):
            return self.app(environ, start_response)
        body = (b"400 Bad Request: this app does not answer to that host name (protection against DNS "
                b"rebinding). Add the name to MLFLOW_CC_ALLOWED_HOSTS or mlflow-cc ui --allowed-hosts.\n")
        start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8"),
                                           ("Content-Length", str(len(body)))])
        return [body]


def protect(server: Any, settings: Settings) -> None:
    """Put the Host allow-list (and, if configured, ProxyFix) in front of a Flask app."""
    wsgi = HostAllowList(server.wsgi_app, allowed_host_names(settings))
    if settings.trust_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only the client address and scheme: never X-Forwarded-Host, which a page could set
        # itself to slip past the Host allow-list if the proxy does not overwrite it.
        wsgi = ProxyFix(wsgi, x_for=settings.trust_proxy, x_proto=settings.trust_proxy)
    server.wsgi_app = wsgi


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
                 mlflow_ui_url: str | None = None, allowed_hosts: Iterable[str] | None = None) -> dict[str, str]:
    """The environment of a gunicorn-served app with these settings (added to the current one)."""
    env = {ENV_AUTH: auth, ENV_BIND: f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
           ENV_WORKERS: str(workers), ENV_ALLOW_REMOTE: "1" if allow_remote else ""}
    if allowed_hosts is not None:
        env[ENV_ALLOWED_HOSTS] = ",".join(allowed_hosts)
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
