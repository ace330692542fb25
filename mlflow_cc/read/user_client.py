"""An MlflowClient that talks to a tracking server as one given user (the app's per-user readers).

MLflow's client takes credentials from process-wide environment variables, which
cannot serve several signed-in users from one app process. This client carries its
own username and password instead (kept in memory, never logged: ``repr`` hides
them), so every tracking call (search, get, set_tag for flags) is made as that user
and MLflow's own permissions decide what is readable and writable.

Artifact downloads still go through MLflow's artifact repositories, which read the
process's credentials; the app only starts one after the user's own client has read
the run, so MLflow's permission check on the run stands in front of it.
"""

from __future__ import annotations

import requests
from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry.client import ModelRegistryClient
from mlflow.tracking._tracking_service.client import TrackingServiceClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import MlflowHostCreds

#: Seconds a sign-in check may take.
CHECK_TIMEOUT_S = 30.0  # MLflow hashes the password (scrypt): slow on a busy server


class _UserTrackingClient(TrackingServiceClient):
    """A TrackingServiceClient whose store sends one user's credentials."""

    def __init__(self, tracking_uri: str, store: RestStore) -> None:
        self._user_store = store
        super().__init__(tracking_uri)

    @property
    def store(self) -> RestStore:  # type: ignore[override]
        return self._user_store


class _UserRegistryClient(ModelRegistryClient):
    """A ModelRegistryClient whose store sends one user's credentials."""

    def __init__(self, tracking_uri: str, store: RegistryRestStore) -> None:
        self._user_store = store
        super().__init__(tracking_uri, tracking_uri)

    @property
    def store(self) -> RegistryRestStore:  # type: ignore[override]
        return self._user_store


def client_for_user(tracking_uri: str, username: str, password: str) -> MlflowClient:
    """An MlflowClient on ``tracking_uri`` (http/https) that authenticates as ``username``."""
    if not tracking_uri.startswith(("http://", "https://")):
        raise ValueError("per-user credentials need an mlflow server (http:// or https://) tracking URI")
    base = get_default_host_creds(tracking_uri)  # TLS settings etc. from the environment

    def creds() -> MlflowHostCreds:
        return MlflowHostCreds(host=tracking_uri, username=username, password=password,
                               ignore_tls_verification=base.ignore_tls_verification,
                               client_cert_path=base.client_cert_path, server_cert_path=base.server_cert_path)

    client = MlflowClient(tracking_uri)
    client._tracking_client = _UserTrackingClient(tracking_uri, RestStore(creds))
    # The Model Registry too (Register model writes versions as the signed-in user).
    client._registry_client_lazy = _UserRegistryClient(tracking_uri, RegistryRestStore(creds))
    return client


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
