"""A basic-auth ``mlflow server`` on PostgreSQL with two users, shared by the auth tests of one module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_cc.read.user_client import client_for_user
from testing.local_server import (
    MlflowServer,
    create_postgres_database,
    drop_postgres_database,
)

ADMIN_PW = "admin-password-1"
ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-123")


@dataclass
class AuthStore:
    """The server, and the experiments: alice may READ ``alice_exp``, bob may EDIT ``bob_exp``."""

    server: MlflowServer
    alice_exp: str
    bob_exp: str

    @property
    def url(self) -> str:
        return self.server.url


def auth_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStore]:
    """Use as a module-scoped fixture body (``yield from auth_store(...)``)."""
    import flask_wtf  # noqa: F401 - MLflow's basic-auth app needs mlflow[auth]; fail loudly without it

    from testing.auth_server import AuthAdmin, start_basic_auth_server

    name, uri = create_postgres_database("mlflowcc_auth")
    work: Path = tmp_path_factory.mktemp("auth-server")
    server = start_basic_auth_server(uri, work, ADMIN_PW)
    try:
        admin = AuthAdmin(server.url, ADMIN_PW)
        for user, pw in (ALICE, BOB):
            admin.create_user(user, pw)
        client = client_for_user(server.url, "admin", ADMIN_PW)
        alice_exp = client.create_experiment("alice-study")
        bob_exp = client.create_experiment("bob-study")
        admin.grant_experiment(ALICE[0], alice_exp, "READ")
        admin.grant_experiment(BOB[0], bob_exp, "EDIT")
        yield AuthStore(server, alice_exp, bob_exp)
    finally:
        server.stop(grace_s=3)  # it can take 20 s to wind down by itself
        drop_postgres_database(name)

