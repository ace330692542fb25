"""Reading as a user of a basic-auth ``mlflow server``: MLflow's permissions decide what is read and written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from team_auth_fixtures import ADMIN_PW, ALICE, BOB, AuthStore, auth_store

from mlflow_cc import contract
from mlflow_cc.errors import MlflowCCError
from mlflow_cc.flags import add_flag
from mlflow_cc.reader import ExperimentReader, list_experiments
from mlflow_cc.snapshot import SnapshotStore
from mlflow_cc.user_client import SignInError, check_credentials, client_for_user


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStore]:
    yield from auth_store(tmp_path_factory)


def test_sign_in_is_checked_by_mlflow(store: AuthStore) -> None:
    check_credentials(store.url, *ALICE)
    with pytest.raises(SignInError, match="did not accept") as err:
        check_credentials(store.url, ALICE[0], "wrong-password-1")
    assert "wrong-password" not in str(err.value)
    assert "alice-password" not in repr(client_for_user(store.url, *ALICE).__dict__)


def test_each_user_reads_exactly_what_mlflow_allows(store: AuthStore) -> None:
    alice, bob = client_for_user(store.url, *ALICE), client_for_user(store.url, *BOB)
    assert [e["name"] for e in list_experiments(alice)] == ["alice-study"]
    assert [e["name"] for e in list_experiments(bob)] == ["bob-study"]
    assert ExperimentReader("alice-study", client=alice).experiment_id == store.alice_exp
    with pytest.raises(MlflowCCError, match="not found"):
        ExperimentReader("bob-study", client=alice)
    with pytest.raises(MlflowCCError, match="not found"):
        ExperimentReader(store.bob_exp, client=alice)


def test_flags_are_written_only_where_mlflow_allows(store: AuthStore) -> None:
    admin = client_for_user(store.url, "admin", ADMIN_PW)
    in_alice = admin.create_run(store.alice_exp, run_name="m").info.run_id
    in_bob = admin.create_run(store.bob_exp, run_name="m").info.run_id
    with pytest.raises(MlflowException) as err:  # alice may only READ her experiment
        add_flag(client_for_user(store.url, *ALICE), in_alice, "looks wrong", user=ALICE[0])
    assert err.value.error_code == "PERMISSION_DENIED"
    flag = add_flag(client_for_user(store.url, *BOB), in_bob, "check this", user=BOB[0])  # bob may EDIT his
    assert contract.TAG_FLAG_PREFIX + flag.id in admin.get_run(in_bob).data.tags


def test_parent_in_an_unreadable_experiment_is_reported(store: AuthStore) -> None:
    admin = client_for_user(store.url, "admin", ADMIN_PW)
    hidden_parent = admin.create_run(store.bob_exp, run_name="bob-base").info.run_id
    child = admin.create_run(store.alice_exp, run_name="derived-from-bob",
                             tags={contract.TAG_PARENT: hidden_parent}).info.run_id
    forest = ExperimentReader(store.alice_exp, client=client_for_user(store.url, *ALICE)).forest()
    assert child in forest.roots and hidden_parent not in forest.nodes  # nothing of bob's leaks
    assert any(w.kind == "orphan" and w.run_id == child and "not readable by you" in w.message
               for w in forest.warnings)
    admin_forest = ExperimentReader(store.alice_exp, client=admin).forest()  # the admin may follow it
    assert admin_forest[child].parent_id == hidden_parent and admin_forest[hidden_parent].external


def test_snapshots_never_cross_users_and_die_with_access(store: AuthStore, tmp_path: Path) -> None:
    from mlflow_cc.auth_server import AuthAdmin

    snapshots = SnapshotStore(tmp_path / "snapshots")
    admin_api = AuthAdmin(store.url, ADMIN_PW)
    admin_api.grant_experiment(BOB[0], store.alice_exp, "READ")
    bob = client_for_user(store.url, *BOB)
    first = ExperimentReader(store.alice_exp, client=bob, snapshot=snapshots)
    first.forest()
    alice_reader = ExperimentReader(store.alice_exp, client=client_for_user(store.url, *ALICE), snapshot=snapshots)
    alice_reader.forest()
    assert not alice_reader.opened_from_snapshot  # bob's snapshot is not alice's
    assert len(list(snapshots.directory.glob("*.json"))) == 2
    admin_api.revoke_experiment(BOB[0], store.alice_exp)  # access withdrawn
    with pytest.raises(MlflowCCError, match="not found"):
        ExperimentReader(store.alice_exp, client=bob, snapshot=snapshots).forest()


def _signed_app(store: AuthStore, tmp_path: Path) -> Any:
    """A minimal Dash app behind the sign-in, to drive with Flask's test client."""
    from dash import Dash, html

    from dash_app.auth import install_auth
    from dash_app.sessions import SessionStore

    app = Dash(__name__)
    app.layout = html.Div("inside")
    install_auth(app, store.url, SessionStore(tmp_path / "sessions.sqlite", secret=b"s" * 32))
    return app.server.test_client()


def test_sign_in_flow_keeps_credentials_on_the_server(store: AuthStore, tmp_path: Path) -> None:
    web = _signed_app(store, tmp_path)
    resp = web.get("/?experiment=1")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=/%3Fexperiment")
    assert web.post("/_dash-update-component", json={}).status_code == 401
    bad = web.post("/login", data={"username": "alice", "password": "not-her-password", "next": "/"})
    assert bad.status_code == 401 and b"did not accept" in bad.data and b"not-her-password" not in bad.data
    good = web.post("/login", data={"username": ALICE[0], "password": ALICE[1], "next": "//evil.example/x"})
    assert good.status_code == 302 and good.headers["Location"] == "/"  # never off-site
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and ALICE[1] not in cookie
    page = web.get("/")
    assert page.status_code == 200 and ALICE[1].encode() not in page.data
    assert page.headers["X-Frame-Options"] == "DENY"
    web.get("/logout")
    assert web.get("/").status_code == 302
