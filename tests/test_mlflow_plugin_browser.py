"""`mlflow server --app-name compress-compare[-auth]`: the MLflow UI and the app at one origin.

Real ``mlflow server`` processes on sqlite, a real Chromium: without sign-in under MLflow's
default uvicorn server with ``--static-prefix``, and composed with MLflow's basic-auth app
under ``--gunicorn-opts`` with two users who each see only their own experiment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient
from waiting import TIMEOUT_S

from testing.auth_server import AuthAdmin, start_basic_auth_server
from testing.local_server import MlflowServer, start_mlflow_server
from testing.synthetic import build_study_shape

SCREENS = Path("/work/screens/plugin")
ADMIN_PW = "admin-password-1"
ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-123")
MS = int(TIMEOUT_S * 1000)


def _screens() -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    return SCREENS


def _open_app(context, url: str):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url, wait_until="load")
    return page, errors


def _wait_status(page, text: str) -> str:
    page.wait_for_function("t => (document.querySelector('#ov-status') || {innerText: ''}).innerText.includes(t)",
                           arg=text, timeout=MS)
    return page.locator("#ov-status").inner_text()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    work = tmp_path_factory.mktemp("plugin-plain")
    server = start_mlflow_server(f"sqlite:///{work / 'mlflow.db'}", work,
                                 extra_args=["--app-name", "compress-compare"], static_prefix="/ml")
    yield server
    server.stop(grace_s=5)


def test_mlflow_ui_and_app_at_one_origin(plain_server: MlflowServer, browser) -> None:
    tracking = plain_server.url  # ends in the --static-prefix: the tracking API lives under it too
    study = build_study_shape("plugin-study", tracking_uri=tracking)
    client = MlflowClient(tracking)
    exp_id = client.get_experiment_by_name("plugin-study").experiment_id
    # Runs logged to this server link to the app at its path on the same origin.
    note = client.get_run(study["mag50"][0]).data.tags["mlflow.note.content"]
    assert f"({tracking}/compress-compare/?experiment={exp_id}&select={study['mag50'][0]})" in note

    context = browser.browser.new_context(viewport={"width": 1400, "height": 900})
    ui, ui_errors = _open_app(context, f"{tracking}/#/experiments/{exp_id}/runs")
    ui.locator("[role=gridcell]", has_text="cnn-base").first.wait_for(timeout=MS)
    ui.screenshot(path=str(_screens() / "plugin-mlflow-ui.png"))

    app, app_errors = _open_app(context, f"{tracking}/compress-compare/?experiment={exp_id}")
    status = _wait_status(app, f"{len(study)} models")
    assert status.startswith("plugin-study: ")
    app.locator("#ov-map .scatterlayer .point").first.wait_for(timeout=MS)
    app.locator("#ov-scatter .scatterlayer .point").first.wait_for(timeout=MS)
    # A run link in the app opens the run's page in the MLflow UI of this origin.
    app.goto(f"{tracking}/compress-compare/?experiment={exp_id}&sel={study['mag50'][0]}", wait_until="load")
    link = app.locator(f"a[href*='/runs/{study['mag50'][0]}']").first
    link.wait_for(timeout=MS)
    assert link.get_attribute("href") == f"/ml/#/experiments/{exp_id}/runs/{study['mag50'][0]}"
    app.screenshot(path=str(_screens() / "plugin-app.png"))
    assert ui_errors == [] and app_errors == []
    # MLflow's own Host allow-list guards the app's paths too (DNS rebinding).
    refused = requests.get(f"{tracking}/compress-compare/", headers={"Host": "evil.example"}, timeout=30)
    assert refused.status_code in (400, 403)
    context.close()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, str, str]]:
    work = tmp_path_factory.mktemp("plugin-auth")
    backend = f"sqlite:///{work / 'mlflow.db'}"
    # The studies go straight into the server's store first: through basic-auth every request
    # pays a password hash, and 40 runs take minutes on a busy machine.
    build_study_shape("alice-study", tracking_uri=backend)
    build_study_shape("bob-study", tracking_uri=backend, seed=1)
    client = MlflowClient(backend)
    alice_exp = client.get_experiment_by_name("alice-study").experiment_id
    bob_exp = client.get_experiment_by_name("bob-study").experiment_id
    server = start_basic_auth_server(backend, work, ADMIN_PW, app_name="compress-compare-auth",
                                     extra_args=["--gunicorn-opts", "--timeout 120 --threads 4"])
    try:
        admin = AuthAdmin(server.url, ADMIN_PW)
        for user, pw in (ALICE, BOB):
            admin.create_user(user, pw)
        admin.grant_experiment(ALICE[0], alice_exp, "READ")
        admin.grant_experiment(BOB[0], bob_exp, "EDIT")
        yield server, alice_exp, bob_exp
    finally:
        server.stop(grace_s=5)


def test_basic_auth_users_see_only_their_experiments(auth_server, browser) -> None:
    server, alice_exp, bob_exp = auth_server
    # Signed out: MLflow's own basic-auth challenge, for the app's paths as for MLflow's.
    assert requests.get(f"{server.url}/compress-compare/", timeout=60).status_code == 401
    for (user, pw), own, other, name in ((ALICE, alice_exp, bob_exp, "alice-study"),
                                         (BOB, bob_exp, alice_exp, "bob-study")):
        context = browser.browser.new_context(viewport={"width": 1400, "height": 900},
                                              http_credentials={"username": user, "password": pw})
        ui, ui_errors = _open_app(context, f"{server.url}/#/experiments/{own}/runs")
        ui.locator("[role=gridcell]", has_text="cnn-base").first.wait_for(timeout=MS)
        app, app_errors = _open_app(context, f"{server.url}/compress-compare/?experiment={own}")
        assert _wait_status(app, "models").startswith(f"{name}: ")
        assert app.locator("#cc-user-name").inner_text() == user
        app.locator("#ov-map .scatterlayer .point").first.wait_for(timeout=MS)
        app.locator("#ov-scatter .scatterlayer .point").first.wait_for(timeout=MS)
        app.screenshot(path=str(_screens() / f"plugin-auth-{user}.png"))
        # The experiment picker lists only what MLflow lets this user read.
        layout = context.request.get(f"{server.url}/compress-compare/_dash-layout").text()
        assert name in layout and ("bob-study" if user == "alice" else "alice-study") not in layout
        # Asking for the other user's experiment by id reads nothing of it.
        app.goto(f"{server.url}/compress-compare/?experiment={other}", wait_until="load")
        text = app.wait_for_function(
            "() => { const s = document.querySelector('#ov-status'); return s && !s.innerText.includes('reading')"
            " && s.innerText; }", timeout=MS).json_value()
        assert "models" not in text or text.startswith(f"{name}: ")
        assert ("bob-study" if user == "alice" else "alice-study") not in app.content()
        assert ui_errors == [] and app_errors == []
        context.close()
