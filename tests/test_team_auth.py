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
from mlflow_cc.read.reader import ExperimentReader, list_experiments
from mlflow_cc.read.snapshot import SnapshotStore
from mlflow_cc.read.user_client import SignInError, check_credentials, client_for_user
from mlflow_cc.track.flags import add_flag


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
    from testing.auth_server import AuthAdmin

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
    bad = web.post("/login", data={"username": "alice", "password": "not-her-password", "next": "/",
                                   "csrf_token": _csrf(web, "/login")})
    assert bad.status_code == 401 and b"did not accept" in bad.data and b"not-her-password" not in bad.data
    good = web.post("/login", data={"username": ALICE[0], "password": ALICE[1], "next": "//evil.example/x",
                                    "csrf_token": _csrf(web, "/login")})
    assert good.status_code == 302 and good.headers["Location"] == "/"  # never off-site
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and ALICE[1] not in cookie
    page = web.get("/")
    assert page.status_code == 200 and ALICE[1].encode() not in page.data
    assert page.headers["X-Frame-Options"] == "DENY"
    web.post("/logout", data={"csrf_token": _csrf(web, "/logout")})
    assert web.get("/").status_code == 302


def _csrf(web: Any, form_path: str) -> str:
    """The CSRF token of the sign-in or sign-out form, as a browser would read it."""
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', web.get(form_path).get_data(as_text=True)).group(1)


def test_two_users_see_different_experiments_in_the_browser(store: AuthStore, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from browser import launch, serve

    from dash_app.serving import Settings
    from dash_app.sessions import SessionStore
    from dash_app.wsgi import build_app

    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache"))
    admin = client_for_user(store.url, "admin", ADMIN_PW)
    run_ids = {}
    for exp, name in ((store.alice_exp, "alice-model"), (store.bob_exp, "bob-model")):
        run = admin.create_run(exp, run_name=name, tags={contract.TAG_KIND: contract.KIND_MODEL})
        admin.log_metric(run.info.run_id, "accuracy", 0.9)
        admin.set_terminated(run.info.run_id)
        run_ids[name] = run.info.run_id
    settings = Settings(tracking_uri=store.url, auth="mlflow", allow_remote=False, experiment=None,
                        mlflow_ui_url=None, refresh_ms=2000)
    served = serve(build_app(settings, sessions=SessionStore(tmp_path / "sessions.sqlite", secret=b"b" * 32)))
    chromium = launch()
    try:
        for (user, password), mine, theirs, their_exp in ((ALICE, "alice-model", "bob-model", store.bob_exp),
                                                          (BOB, "bob-model", "alice-model", store.alice_exp)):
            context = chromium.browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            js_errors: list[str] = []
            page.on("pageerror", lambda e, errs=js_errors: errs.append(str(e)))
            page.goto(f"{served.url}/?sel={run_ids[mine]}")
            page.wait_for_selector("#login-submit")
            page.fill("#username", user)
            page.fill("#password", password)
            page.click("#login-submit")
            my_study, their_study = f"{user}-study", f"{'bob' if user == 'alice' else 'alice'}-study"
            status = f"() => (document.querySelector('#ov-status') || {{innerText: ''}}).innerText.includes('{my_study}')"
            page.wait_for_function(status, timeout=60_000)
            page.wait_for_function(f"() => document.body.innerText.includes({mine!r})", timeout=30_000)
            body, html = page.inner_text("body"), page.content()
            assert f"Signed in as {user}" in body.replace("\n", " ")
            # the map has drawn my model (what the screenshot and the checks below look at)
            page.wait_for_function("(rid) => { const g = document.querySelector('#ov-map .js-plotly-plot');"
                                   " const t = g && g.data && g.data.find(d => d.name === 'models');"
                                   " return !!t && Array.from(t.customdata).includes(rid); }",
                                   arg=run_ids[mine], timeout=60_000)
            page.screenshot(path=str(Path(__file__).resolve().parents[1] / "screenshots" / f"team-{user}.png"))
            assert theirs not in html and their_study not in html  # nothing of the other user's
            assert password not in page.url and password not in html
            assert "mlflow_cc_session" not in page.evaluate("() => document.cookie")  # HttpOnly
            cookies = context.cookies()
            assert cookies and all(password not in c["value"] for c in cookies)
            # Asking for the other user's experiment by URL shows nothing of it.
            page.goto(f"{served.url}/?experiment={their_exp}&sel={run_ids[theirs]}")
            page.wait_for_function(status, timeout=60_000)
            assert theirs not in page.content()
            assert js_errors == []
            context.close()
    finally:
        chromium.close()
        served.stop()
