"""An MlflowClient that talks to a tracking server as one given user (the app's per-user readers).

MLflow's client takes credentials from process-wide environment variables, which
cannot serve several signed-in users from one app process. :class:`UserClient` carries
its own username and password instead (kept in memory, never logged: ``repr`` hides
them), so every tracking call made through it (search, get, set_tag for flags) is sent as
that user and MLflow's own permissions decide what is readable and writable.

Only public MLflow API is used: the client is a plain :class:`MlflowClient`; while one of
its methods runs, the user is held in a context variable, and MLflow's request-auth plugin
interface (``mlflow.request_auth_provider`` entry point, :class:`UserAuthProvider`, selected
by ``MLFLOW_TRACKING_AUTH``) puts that user's ``Authorization`` header on each request.
Outside such a call the provider adds nothing, so the process's own credentials
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) apply as usual.

Artifact downloads still go through MLflow's artifact repositories with the process's
credentials; the app only starts one after the user's own client has read the run, so
MLflow's permission check on the run stands in front of it.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import requests
from mlflow.tracking import MlflowClient

#: Seconds a sign-in check may take.
CHECK_TIMEOUT_S = 30.0  # MLflow hashes the password (scrypt): slow on a busy server
#: The name of the request-auth provider (``MLFLOW_TRACKING_AUTH`` value) and its entry point.
PROVIDER_NAME = "mlflow-cc-user"
AUTH_ENV = "MLFLOW_TRACKING_AUTH"

#: The user whose call is running in this context: (username, password) or None.
_current_user: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("mlflow_cc_user", default=None)


class _CurrentUserAuth(requests.auth.AuthBase):
    """Basic auth for the user of the running :class:`UserClient` call; nothing otherwise."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        user = _current_user.get()
        if user is not None:
            token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode("ascii")
            request.headers["Authorization"] = f"Basic {token}"
        return request


def _provider_base() -> type:
    from mlflow.tracking.request_auth.abstract_request_auth_provider import (
        RequestAuthProvider,
    )

    return RequestAuthProvider


class UserAuthProvider(_provider_base()):  # type: ignore[misc]
    """MLflow request-auth plugin (entry point ``mlflow.request_auth_provider``: ``mlflow-cc-user``)."""

    def get_name(self) -> str:
        return PROVIDER_NAME

    def get_auth(self) -> requests.auth.AuthBase:
        return _CurrentUserAuth()


def _activate_provider() -> None:
    """Select :class:`UserAuthProvider` for this process, or say why it cannot be."""
    current = os.environ.get(AUTH_ENV)
    if current not in (None, "", PROVIDER_NAME):
        raise RuntimeError(f"{AUTH_ENV}={current!r} selects another MLflow auth provider; per-user clients need "
                           f"{AUTH_ENV} unset (or {PROVIDER_NAME!r})")
    if not any(ep.name == PROVIDER_NAME for ep in entry_points(group="mlflow.request_auth_provider")):
        raise RuntimeError("mlflow-cc's request-auth provider is not registered: reinstall mlflow-cc "
                           "(pip install mlflow-cc) so its entry points are installed")
    os.environ[AUTH_ENV] = PROVIDER_NAME


class UserClient(MlflowClient):
    """An MlflowClient whose every public call is made as ``username``."""

    def __init__(self, tracking_uri: str, username: str, password: str) -> None:
        super().__init__(tracking_uri)
        self.username = username
        self.server_url = tracking_uri
        # In a closure: neither repr(client) nor vars(client) shows the password.
        self._user = lambda: (username, password)

    def __repr__(self) -> str:  # never print the password
        return f"UserClient({self.server_url!r}, username={self.username!r})"

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name.startswith("_") or not callable(value) or isinstance(value, type):
            return value
        return _as_user(value, super().__getattribute__("_user")())


def _as_user(method: Callable[..., Any], user: tuple[str, str]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        token = _current_user.set(user)
        try:
            return method(*args, **kwargs)
        finally:
            _current_user.reset(token)

    return call


def call_as(client: MlflowClient, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (e.g. a request made without the client) as ``client``'s user when it is a
    :class:`UserClient`; as is for any other client. (reader-scale: the lean REST read path.)"""
    if not isinstance(client, UserClient):
        return fn()
    return _as_user(fn, client._user())()


def client_for_user(tracking_uri: str, username: str, password: str) -> MlflowClient:
    """An MlflowClient on ``tracking_uri`` (http/https) that authenticates as ``username``."""
    if not tracking_uri.startswith(("http://", "https://")):
        raise ValueError("per-user credentials need an mlflow server (http:// or https://) tracking URI")
    _activate_provider()
    return UserClient(tracking_uri, username, password)


class SignInError(Exception):
    """Why a sign-in failed, in words for the login form (never containing the password)."""


def check_credentials(tracking_uri: str, username: str, password: str) -> None:
    """Ask the server whether these credentials are valid; raises :class:`SignInError` if not."""
    url = tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    try:
        resp = requests.get(url, params={"max_results": 1}, auth=(username, password), timeout=CHECK_TIMEOUT_S)
    except requests.RequestException:
        raise SignInError("The MLflow tracking server did not answer; try again in a moment.") from None
    if resp.status_code == 401:
        raise SignInError("MLflow did not accept this username and password.")
    if resp.status_code != 200:
        raise SignInError(f"The MLflow tracking server answered {resp.status_code}; try again later.")
