"""Hardened sign-in of the team app, against a real basic-auth ``mlflow server`` on PostgreSQL.

The app is the real one (``dash_app.wsgi.build_app``), driven over HTTP with Flask's test
client as a browser, or a hostile page or script, would.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dash_http import call, comparison_context, outputs
from team_auth_fixtures import ADMIN_PW, ALICE, BOB, AuthStore, auth_store

from dash_app.serving import Settings
from dash_app.sessions import SessionStore
from dash_app.wsgi import build_app
from mlflow_cc import contract
from mlflow_cc.read.user_client import SignInError, check_credentials, client_for_user

SECRET = b"Yq3-vN8kT0pLz7RfWm2xJcB5sHdE9uGa"
CSRF_COOKIE = "mlflow_cc_csrf"  # dash_app.auth.CSRF_COOKIE (spelled out: the tests also run against older code)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStore]:
    for ready in auth_store(tmp_path_factory):
        # A fresh server's first basic-auth requests can be slow on a busy machine: wait until
        # it answers a sign-in check before the tests time theirs.
        deadline = time.monotonic() + 180
        while True:
            try:
                check_credentials(ready.url, "admin", ADMIN_PW)
                break
            except SignInError:
                assert time.monotonic() < deadline, "the basic-auth server never answered a sign-in check"
        yield ready


@pytest.fixture
def make_app(store: AuthStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Build the team app (sign-in with MLflow) with a fresh cache; returns a test-client factory."""
    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("MLFLOW_CC_SECRET_KEY", "MLFLOW_CC_ALLOWED_HOSTS", "MLFLOW_CC_TRUST_PROXY",
                 "MLFLOW_CC_SESSION_MAX_AGE"):
        monkeypatch.delenv(name, raising=False)

    def make(**settings: Any) -> Any:
        base: dict[str, Any] = {"tracking_uri": store.url, "auth": "mlflow", "allow_remote": False,
                                "experiment": None, "mlflow_ui_url": None, "refresh_ms": 3000}
        app = build_app(Settings(**{**base, **settings}),
                        sessions=SessionStore(tmp_path / "sessions.sqlite", secret=SECRET))
        return app.server.test_client()

    return make


def _csrf(web: Any, next_path: str = "/") -> str:
    """Open the sign-in form as a browser does; returns its CSRF token ("" if it has none)."""
    page = web.get("/login", query_string={"next": next_path}).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]*)"', page)
    return found.group(1) if found else ""


def _sign_in(web: Any, user: tuple[str, str], next_path: str = "/", **kwargs: Any) -> Any:
    token = _csrf(web, next_path)
    return web.post("/login", data={"username": user[0], "password": user[1], "next": next_path,
                                    "csrf_token": token}, **kwargs)


def _session_cookie(resp: Any) -> str | None:
    return next((c for c in resp.headers.getlist("Set-Cookie") if c.startswith("mlflow_cc_session=")), None)


def test_sign_in_needs_the_forms_csrf_token(make_app: Any) -> None:
    web = make_app()
    form = web.get("/login")
    assert 'name="csrf_token"' in form.get_data(as_text=True)
    nonce_cookie = next(c for c in form.headers.getlist("Set-Cookie") if c.startswith(f"{CSRF_COOKIE}="))
    assert "HttpOnly" in nonce_cookie and "SameSite=Strict" in nonce_cookie
    # A cross-site form post (login CSRF: signing the victim in as the attacker) has no token.
    forged = web.post("/login", data={"username": ALICE[0], "password": ALICE[1], "next": "/"})
    assert forged.status_code == 400 and _session_cookie(forged) is None
    assert "did not come from this app" in forged.get_data(as_text=True)
    # A token lifted from another browser's form does not match this browser's nonce cookie.
    other = make_app()
    stolen = _csrf(other)
    web.get("/login")
    resp = web.post("/login", data={"username": ALICE[0], "password": ALICE[1], "csrf_token": stolen})
    assert resp.status_code == 400 and _session_cookie(resp) is None
    good = _sign_in(web, ALICE)
    assert good.status_code == 302 and _session_cookie(good) is not None, good.get_data(as_text=True)
    assert web.get("/").status_code == 200


def test_failed_sign_ins_are_rate_limited(make_app: Any) -> None:
    web = make_app()
    for _ in range(5):
        assert _sign_in(web, (ALICE[0], "wrong-password-1")).status_code == 401
    limited = _sign_in(web, (ALICE[0], "wrong-password-1"))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "Too many failed sign-ins" in limited.get_data(as_text=True)
    # Even the right password is not tried while limited: guessing gets no answer at all.
    right = _sign_in(web, ALICE)
    assert right.status_code == 429 and _session_cookie(right) is None
    # The limit is per address and username: another user, or another address, is not held up.
    assert _sign_in(web, (BOB[0], "wrong-password-1")).status_code == 401
    elsewhere = make_app()
    ok = _sign_in(elsewhere, ALICE, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert ok.status_code == 302 and _session_cookie(ok) is not None


def test_sign_out_is_a_post_with_the_sessions_token(make_app: Any) -> None:
    web = make_app()
    assert _sign_in(web, ALICE).status_code == 302
    # A link or an <img src=/logout> on any page must not sign the user out.
    page = web.get("/logout")
    assert page.status_code in (200, 405)
    assert web.get("/").status_code == 200
    assert web.post("/logout", data={}).status_code == 400  # no token: a cross-site form
    assert web.get("/").status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    # The app's header has the same sign-out form.
    assert token in web.get("/_dash-layout").get_data(as_text=True)
    out = web.post("/logout", data={"csrf_token": token})
    assert out.status_code in (302, 303) and out.headers["Location"].endswith("/login")
    assert web.get("/").status_code == 302


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\\evil.example", "//evil.example", "/\n/evil.example",
                                    "https://evil.example/", "/\r\n/evil.example", " //evil.example",
                                    "/\x0b/evil.example", "/\u3000/evil.example", "\\\\evil.example", "evil.example"])
def test_next_is_only_ever_a_path_of_this_app(make_app: Any, target: str) -> None:
    web = make_app()
    resp = _sign_in(web, ALICE, next_path=target)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert 'name="next" value="/"' in web.get("/login", query_string={"next": target}).get_data(as_text=True)


def test_next_keeps_a_path_of_this_app(make_app: Any) -> None:
    resp = _sign_in(make_app(), ALICE, next_path="/?experiment=1&sel=a,b")
    assert resp.status_code == 302 and resp.headers["Location"] == "/?experiment=1&sel=a,b"


def test_a_session_ends_after_its_absolute_lifetime(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """However busy the user, a sign-in lasts 12 h (the idle timeout alone would keep it forever)."""
    web = make_app()
    assert _sign_in(web, ALICE).status_code == 302
    assert web.get("/").status_code == 200
    start = time.time()
    for hours in (4, 7.5, 11.5):  # a request every few hours keeps it from going idle
        monkeypatch.setattr(time, "time", lambda h=hours: start + h * 3600)
        assert web.get("/_dash-dependencies").status_code == 200, hours
    monkeypatch.setattr(time, "time", lambda: start + 12.1 * 3600)
    assert web.get("/_dash-dependencies").status_code == 401
    assert web.get("/").status_code == 302


def test_session_max_age_setting(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_CC_SESSION_MAX_AGE", "3600")
    web = make_app()
    resp = _sign_in(web, ALICE)
    assert "Max-Age=3600" in _session_cookie(resp)
    start = time.time()
    monkeypatch.setattr(time, "time", lambda: start + 3601)
    assert web.get("/").status_code == 302


def test_behind_a_tls_proxy_cookies_are_secure(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    # Not trusted by default: a client cannot claim https (or another address) for itself.
    web = make_app()
    assert "Secure" not in _session_cookie(_sign_in(web, ALICE, headers=https))
    monkeypatch.setenv("MLFLOW_CC_TRUST_PROXY", "1")
    web = make_app(trust_proxy=Settings.from_env().trust_proxy)
    form = web.get("/login", headers=https)
    assert "Secure" in next(c for c in form.headers.getlist("Set-Cookie") if c.startswith(f"{CSRF_COOKIE}="))
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    resp = web.post("/login", data={"username": ALICE[0], "password": ALICE[1], "csrf_token": token}, headers=https)
    cookie = _session_cookie(resp)
    assert resp.status_code == 302 and "Secure" in cookie and "HttpOnly" in cookie
    # The rate limit counts the forwarded client address, not the proxy's.
    for _ in range(5):
        _sign_in(web, (BOB[0], "wrong-password-1"), headers=https)
    assert _sign_in(web, (BOB[0], "wrong-password-1"), headers=https).status_code == 429
    other = {**https, "X-Forwarded-For": "198.51.100.9"}
    assert _sign_in(web, (BOB[0], "wrong-password-1"), headers=other).status_code == 401


def test_flags_are_written_with_the_users_own_permissions(make_app: Any, store: AuthStore) -> None:
    from testing.auth_server import AuthAdmin

    admin = client_for_user(store.url, "admin", ADMIN_PW)
    shared = admin.create_experiment("shared-study")
    AuthAdmin(store.url, ADMIN_PW).grant_experiment(BOB[0], shared, "EDIT")

    def model(exp: str, name: str) -> str:
        run = admin.create_run(exp, run_name=name, tags={contract.TAG_KIND: contract.KIND_MODEL})
        admin.log_metric(run.info.run_id, "accuracy", 0.9)
        admin.set_terminated(run.info.run_id)
        return run.info.run_id

    bobs, elsewhere, alices = model(store.bob_exp, "bob-m"), model(shared, "shared-m"), model(store.alice_exp, "alice-m")

    def flag(user: tuple[str, str], exp: str, run_id: str) -> tuple[str, int]:
        web = make_app()
        assert _sign_in(web, user).status_code == 302
        assert web.get("/").status_code == 200
        search = f"?experiment={exp}&sel={run_id}"
        state = outputs(call(web, "ov-state.data", {("ov-url-first", "data"): search}))["ov-state"]["data"]
        cmp = comparison_context(web, state)
        if run_id not in [m["run_id"] for m in cmp["models"]]:  # send another run than the one on screen
            cmp = {**cmp, "models": [*cmp["models"], {"run_id": run_id, "name": "x", "full_name": "x"}]}
        resp = call(web, "cmp-flag-msg.children", {("cmp-flag-add", "n_clicks"): 1,
                                                   ("cmp-flag-target", "value"): json.dumps([run_id, "model"]),
                                                   ("cmp-flag-note", "value"): "check",
                                                   ("cmp-ctx", "data"): cmp})
        return outputs(resp)["cmp-flag-msg"]["children"], resp.status_code

    def flags_on(run_id: str) -> list[str]:
        return [k for k in admin.get_run(run_id).data.tags if k.startswith(contract.TAG_FLAG_PREFIX)]

    # Bob may edit "shared-study", but the screen shows his own study: the browser's run id is refused.
    bob_screen = {"run_id": bobs}
    assert bob_screen and flag(BOB, store.bob_exp, elsewhere)[0] == "not saved: not a model of this experiment"
    assert flags_on(elsewhere) == []
    assert flag(BOB, store.bob_exp, alices)[0] == "not saved: not a model of this experiment"
    assert flag(BOB, store.bob_exp, bobs) == ("flag saved to the model's MLflow run", 200)
    assert len(flags_on(bobs)) == 1
    # Alice may only read her study: MLflow refuses the write, and she is told so (no callback error).
    message, status = flag(ALICE, store.alice_exp, alices)
    assert status == 200 and message == "not saved: MLflow refused the write (PERMISSION_DENIED)"
    assert flags_on(alices) == []


def test_register_model_follows_the_users_permissions(make_app: Any, store: AuthStore) -> None:
    """*Register model* writes with the signed-in user's client: READ on the registered model is refused."""
    from dash_app.state import overview_part
    from testing.auth_server import AuthAdmin

    admin = client_for_user(store.url, "admin", ADMIN_PW)
    admin.create_registered_model("team-model")
    auth = AuthAdmin(store.url, ADMIN_PW)
    auth.grant_registered_model(ALICE[0], "team-model", "READ")
    auth.grant_registered_model(BOB[0], "team-model", "EDIT")

    def register(user: tuple[str, str], exp: str) -> tuple[str, str]:
        run = admin.create_run(exp, run_name=f"{user[0]}-model", tags={contract.TAG_KIND: contract.KIND_MODEL})
        admin.set_terminated(run.info.run_id)
        web = make_app()
        assert _sign_in(web, user).status_code == 302
        search = f"?experiment={exp}&sel={run.info.run_id}"
        state = outputs(call(web, "ov-state.data", {("ov-url-first", "data"): search}))["ov-state"]["data"]
        resp = call(web, "ov-reg-msg.children", {("ov-reg-btn", "n_clicks"): 1, ("ov-reg-name", "value"): "team-model",
                                                 ("ov-reg-alias", "value"): "", ("ov-view", "data"): overview_part(state)})
        return outputs(resp)["ov-reg-msg"]["children"], run.info.run_id

    message, _ = register(ALICE, store.alice_exp)
    assert message.startswith("not registered: MLflow refused (PERMISSION_DENIED)"), message
    assert admin.search_model_versions("name = 'team-model'") == []
    message, bobs = register(BOB, store.bob_exp)
    assert message.startswith("Registered bob-model as team-model version 1 — bob-model"), message
    assert [v.run_id for v in admin.search_model_versions("name = 'team-model'")] == [bobs]


def test_sign_out_button_in_the_browser(store: AuthStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header's Sign out button posts the session's token: the user is signed out, for good."""
    from browser import launch, serve

    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings(tracking_uri=store.url, auth="mlflow", allow_remote=False, experiment=None,
                        mlflow_ui_url=None, refresh_ms=3000)
    served = serve(build_app(settings, sessions=SessionStore(tmp_path / "sessions.sqlite", secret=SECRET)))
    chromium = launch()
    try:
        page = chromium.page
        page.goto(f"{served.url}/")
        page.wait_for_selector("#login-submit")
        page.fill("#username", ALICE[0])
        page.fill("#password", ALICE[1])
        page.click("#login-submit")
        page.wait_for_selector("#cc-sign-out", timeout=60_000)
        page.click("#cc-sign-out")
        page.wait_for_selector("#login-submit", timeout=60_000)
        assert "/login" in page.url
        page.goto(f"{served.url}/")  # the old session cookie no longer opens the app
        page.wait_for_selector("#login-submit")
        assert [e for e in chromium.errors if "401" not in e] == []
    finally:
        chromium.close()
        served.stop()


def test_flags_are_removed_with_the_users_own_permissions(make_app: Any, store: AuthStore) -> None:
    """Removing a flag is checked like writing one: the experiment on screen, then MLflow decides."""
    from dash_http import remove_flag_call

    from mlflow_cc.track.flags import add_flag

    admin = client_for_user(store.url, "admin", ADMIN_PW)

    def model(exp: str, name: str) -> str:
        run = admin.create_run(exp, run_name=name, tags={contract.TAG_KIND: contract.KIND_MODEL})
        admin.set_terminated(run.info.run_id)
        return run.info.run_id

    bobs, alices = model(store.bob_exp, "bob-unflag"), model(store.alice_exp, "alice-unflag")
    on_bobs, on_alices = add_flag(admin, bobs, "bob's"), add_flag(admin, alices, "alice's")

    def remove(user: tuple[str, str], exp: str, run_id: str, flag_id: str) -> tuple[str, int]:
        web = make_app()
        assert _sign_in(web, user).status_code == 302
        state = outputs(call(web, "ov-state.data", {("ov-url-first", "data"): f"?experiment={exp}&sel={run_id}"}))
        cmp = comparison_context(web, state["ov-state"]["data"])
        resp = remove_flag_call(web, cmp, run_id, flag_id)
        return outputs(resp)["cmp-flag-msg"]["children"], resp.status_code

    def flags_on(run_id: str) -> list[str]:
        return [k for k in admin.get_run(run_id).data.tags if k.startswith(contract.TAG_FLAG_PREFIX)]

    # Bob's screen shows his study: Alice's run is refused before MLflow is asked.
    assert remove(BOB, store.bob_exp, alices, on_alices.id)[0] == "not removed: not a model of this experiment"
    # Alice may only read her study: MLflow refuses, she is told so (no callback error).
    assert remove(ALICE, store.alice_exp, alices, on_alices.id) == (
        "not removed: MLflow refused the write (PERMISSION_DENIED)", 200)
    assert flags_on(alices) == [contract.TAG_FLAG_PREFIX + on_alices.id]
    assert remove(BOB, store.bob_exp, bobs, on_bobs.id) == ("flag removed from the model's MLflow run", 200)
    assert flags_on(bobs) == []
