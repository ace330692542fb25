"""The app's data source for a team: one per signed-in user, and calm when the store goes away.

* :class:`ResilientSource` is a :class:`~dash_app.source.DataSource` that, when the
  tracking store stops answering, keeps serving the last forest it read (views keep
  the user's state; no callback fails) and records it in a
  :class:`~mlflow_cc.read.store_health.StoreHealth` for the "store unreachable, retrying"
  banner. The next refresh after the store returns brings everything up to date.
* :class:`UserSources` routes each request to the current user's own
  ResilientSource, whose readers use that user's MLflow client (and snapshots keyed by
  that user), so one user's runs are never served to another.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache
from mlflow.tracking import MlflowClient

from dash_app.auth import current_session
from dash_app.source import DataSource, ReaderFactory
from mlflow_cc.artifacts.files import cache_dir
from mlflow_cc.errors import StoreUnreachableError
from mlflow_cc.read.lineage import Forest
from mlflow_cc.read.reader import ExperimentReader, list_experiments
from mlflow_cc.read.store_health import StoreHealth, is_unreachable
from mlflow_cc.read.user_client import client_for_user


class ResilientSource(DataSource):
    """A DataSource that rides out a tracking server restart."""

    def __init__(self, factory: ReaderFactory, client: MlflowClient, health: StoreHealth,
                 mlflow_ui_url: str | None = None) -> None:
        super().__init__(factory, None, mlflow_ui_url)
        # Served by several workers: each layer comparison is computed once for all of them.
        self.shared_layers_dir = cache_dir() / "layer-comparisons"
        self.client = client
        self.health = health
        self._experiments: list[dict[str, Any]] = []

    def reader(self, experiment: str | None) -> ExperimentReader:
        if experiment is None and self.default_experiment is None:
            exps = self.experiments()
            if not exps:
                raise LookupError("no experiment you can read in this tracking store")
            experiment = exps[0]["id"]
        try:
            return super().reader(experiment)
        except Exception as exc:
            self._reraise(exc)
            raise

    def experiments(self) -> list[dict[str, Any]]:
        """The experiments this user can read (the last list read, while the store is away)."""
        try:
            self._experiments = list_experiments(self.client)
            self.health.mark_up()
        except Exception as exc:  # noqa: BLE001 - any store error: keep the last list, note an outage
            self._classify(exc)
        return list(self._experiments)

    def forest(self, experiment: str | None) -> Forest:
        reader = self.reader(experiment)
        try:
            return reader.forest()
        except Exception as exc:
            self._reraise(exc)
            raise

    def refresh(self, experiment: str | None) -> Forest:
        """New runs from the store; the forest already read while the store does not answer."""
        reader = self.reader(experiment)
        try:
            forest = reader.refresh()
        except Exception as exc:
            if reader.last_forest is None or self._classify(exc) is exc:
                self._reraise(exc)
                raise
            return reader.last_forest
        self.health.mark_up()
        return forest

    def _reraise(self, exc: Exception) -> None:
        """Raise the clear "unreachable" error for an outage (the caller re-raises anything else)."""
        err = self._classify(exc)
        if err is not exc:
            raise err from exc

    def _classify(self, exc: Exception) -> Exception:
        """Record an unreachable store; returns the exception to raise (unchanged, or a clear one)."""
        if isinstance(exc, StoreUnreachableError) or is_unreachable(exc):
            self.health.mark_down(exc)
            if isinstance(exc, StoreUnreachableError):
                return exc
            return StoreUnreachableError(f"tracking store {self.health.tracking_uri} is unreachable; retrying")
        return exc


class UserSources:
    """Looks like a DataSource; each call goes to the signed-in user's own ResilientSource."""

    def __init__(self, tracking_uri: str, health: StoreHealth, mlflow_ui_url: str | None = None,
                 max_users: int = 64, snapshot: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.health = health
        self._ui_url = mlflow_ui_url
        self._snapshot = snapshot
        self._max_users = max_users
        self._lock = threading.Lock()
        self._sources: LRUCache[str, ResilientSource] = LRUCache(maxsize=max_users)

    def for_current_user(self) -> ResilientSource:
        session = current_session()
        if session is None:
            raise PermissionError("not signed in")
        # Keyed by user and password, so a changed password never reuses an old client.
        key = hashlib.sha256(f"{session.username}\0{session.password}".encode()).hexdigest()
        with self._lock:
            source = self._sources.get(key)
            if source is None:
                client = client_for_user(self.tracking_uri, session.username, session.password)
                factory = _user_factory(client, self._snapshot)
                source = ResilientSource(factory, client, self.health, self._ui_url)
                self._sources[key] = source
            return source

    @property
    def default_experiment(self) -> str | None:
        return self.for_current_user().default_experiment

    def __getattr__(self, name: str) -> Any:
        return getattr(self.for_current_user(), name)


def _user_factory(client: MlflowClient, snapshot: bool) -> Callable[[str], ExperimentReader]:
    return lambda exp: ExperimentReader(exp, client=client, snapshot=snapshot)
