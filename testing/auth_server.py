"""A local ``mlflow server --app-name basic-auth`` and its users (tests, ``make team``).

MLflow's basic-auth keeps users and permissions in its own database, configured by
an ini file (``MLFLOW_AUTH_CONFIG_PATH``). Here that database is a sqlite file next to
the server's artifacts, the default permission is ``NO_PERMISSIONS`` (a user sees an
experiment only when it is theirs or granted), and the admin's first password comes
from ``MLFLOW_AUTH_ADMIN_PASSWORD``. Users and grants are made through MLflow's REST API
as the admin (no credentials in environment variables of the calling process).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import requests

from testing.local_server import MlflowServer, start_mlflow_server

ADMIN = "admin"
#: MLflow's permission names.
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "DENY")


def write_auth_config(workdir: Path, default_permission: str = "NO_PERMISSIONS",
                      admin_password: str | None = None) -> Path:
    """An auth ini with its user database in ``workdir``; returns its path.

    ``admin_password`` is written too when given: older MLflow releases (3.7 included) read it only there.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "basic_auth.ini"
    path.write_text("[mlflow]\n"
                    f"default_permission = {default_permission}\n"
                    f"database_uri = sqlite:///{workdir / 'basic_auth.db'}\n"
                    f"admin_username = {ADMIN}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                    + (f"admin_password = {admin_password}\n" if admin_password else ""))
    path.chmod(0o600)
    return path


def start_basic_auth_server(backend_uri: str, workdir: Path, admin_password: str, *,
                            port: int | None = None, app_name: str = "basic-auth",
                            extra_args: list[str] | None = None) -> MlflowServer:
    """Start ``mlflow server --app-name basic-auth`` (served artifacts) and wait for /health.

    ``app_name``: another app composed with basic-auth (``compress-compare-auth``).
    """
    config = write_auth_config(workdir, admin_password=admin_password)
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(config)  # read by the server process (restarts too)
    os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"] = admin_password
    # The auth app's CSRF protection needs a fixed key (the same across restarts).
    os.environ.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_urlsafe(32))
    return start_mlflow_server(backend_uri, workdir, port=port, extra_args=["--app-name", app_name, *(extra_args or [])])


class AuthAdmin:
    """Users and experiment permissions of a basic-auth server, managed as its admin."""

    def __init__(self, url: str, admin_password: str) -> None:
        self.url = url.rstrip("/")
        self._auth = (ADMIN, admin_password)

    def _post(self, path: str, payload: dict[str, str], method: str = "POST",
              legacy: tuple[str, str, dict[str, str]] | None = None) -> None:
        """``legacy``: (method, path, payload) of the same call on MLflow before the 3.x permissions API."""
        resp = requests.request(method, self.url + path, json=payload, auth=self._auth, timeout=30)
        if resp.status_code == 404 and legacy is not None:
            resp = requests.request(legacy[0], self.url + legacy[1], json=legacy[2], auth=self._auth, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:300]}")

    def create_user(self, username: str, password: str) -> None:
        self._post("/api/2.0/mlflow/users/create", {"username": username, "password": password})

    def grant_experiment(self, username: str, experiment_id: str, permission: str) -> None:
        """Give ``username`` ``permission`` (READ, USE, EDIT, MANAGE or DENY) on an experiment."""
        self._grant(username, "experiment", experiment_id, permission)

    def grant_registered_model(self, username: str, name: str, permission: str) -> None:
        """Give ``username`` ``permission`` on a registered model of the Model Registry."""
        self._grant(username, "registered_model", name, permission)

    def _grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"permission must be one of {PERMISSIONS}")
        legacy_path, key = {"experiment": ("experiments", "experiment_id"),
                            "registered_model": ("registered-models", "name")}[resource_type]
        self._post("/api/3.0/mlflow/users/permissions/grant",
                   {"username": username, "resource_type": resource_type, "resource_id": resource_id,
                    "permission": permission},
                   legacy=("POST", f"/api/2.0/mlflow/{legacy_path}/permissions/create",
                           {key: resource_id, "username": username, "permission": permission}))

    def revoke_experiment(self, username: str, experiment_id: str) -> None:
        """Take back what :meth:`grant_experiment` gave (the default permission applies again)."""
        self._post("/api/3.0/mlflow/users/permissions/revoke",
                   {"username": username, "resource_type": "experiment", "resource_id": experiment_id},
                   legacy=("DELETE", "/api/2.0/mlflow/experiments/permissions/delete",
                           {"experiment_id": experiment_id, "username": username}))
