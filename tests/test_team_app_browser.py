"""The team app (dash_app.wsgi) on a PostgreSQL-backed server: outages in the browser, gunicorn workers."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import Browser, launch, serve
from mlflow.tracking import MlflowClient
from waiting import TIMEOUT_S, dash_callback, wait_until

import mlflow_cc as cc
from dash_app.serving import Settings, gunicorn_env
from dash_app.wsgi import build_app
from testing.local_server import MlflowServer, free_port, wait_healthy
from testing.synthetic import build_random_forest


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = launch()
    yield b
    b.close()


def _settings(uri: str, experiment: str | None = None) -> Settings:
    return Settings(tracking_uri=uri, auth="none", allow_remote=False, experiment=experiment,
                    mlflow_ui_url=None, refresh_ms=1500)


def test_server_restart_while_the_app_is_open(postgres_server: MlflowServer, experiment_name: str,
                                              browser: Browser, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache"))
    uri = postgres_server.url
    with cc.log_base_model("before-outage", experiment=experiment_name, tracking_uri=uri) as base:
        base.log_metrics({"accuracy": 0.9, "size_bytes": 1000.0})
    served = serve(build_app(_settings(uri, experiment_name)))
    context = browser.browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    try:
        exp_id = MlflowClient(uri).get_experiment_by_name(experiment_name).experiment_id
        page.goto(f"{served.url}/?experiment={exp_id}&sel={base.run_id}")
        page.wait_for_function("() => document.body.innerText.includes('before-outage')", timeout=60_000)
        page.wait_for_function("() => document.querySelector('#ov-status').innerText.includes('1 model')",
                               timeout=60_000)
        page.evaluate("() => { window.__samePage = 1; }")
        url_before = page.url
        banner = page.locator("#cc-store-status")
        assert not banner.is_visible()

        postgres_server.stop()
        page.wait_for_function("() => document.body.innerText.includes('Tracking store unreachable')",
                               timeout=30_000)
        assert banner.is_visible() and "retrying" in banner.inner_text()
        assert "before-outage" in page.inner_text("body")  # what was read stays on screen
        page.screenshot(path=str(Path(__file__).resolve().parents[1] / "screenshots" / "team-outage.png"))
        # A few refresh cycles against the dead server, each answered (not a fixed time: on a
        # busy machine seconds may pass before the first request is even sent).
        for _ in range(3):
            page.wait_for_event("response", predicate=dash_callback("ov-interval.n_intervals"),
                                timeout=TIMEOUT_S * 1000)
        page.wait_for_event("response", predicate=dash_callback("cc-store-status-tick.n_intervals"),
                            timeout=TIMEOUT_S * 1000)
        assert banner.is_visible() and "retrying" in banner.inner_text()
        assert "before-outage" in page.inner_text("body")
        assert page.evaluate("() => window.__samePage") == 1

        postgres_server.restart()
        with cc.derive_model(base, "prune", {"sparsity": 0.5}, name="after-restart", tracking_uri=uri) as m:
            m.log_metrics({"accuracy": 0.8, "size_bytes": 500.0})
        # Generous: the health ping allows the restarted server 2 s to answer, which a loaded machine may miss.
        page.wait_for_function("() => !document.body.innerText.includes('Tracking store unreachable')",
                               timeout=2 * TIMEOUT_S * 1000)
        page.wait_for_function("() => (document.querySelector('#ov-status') || {innerText: ''})"
                               ".innerText.includes('2 models')", timeout=2 * TIMEOUT_S * 1000)  # the new run, no reload
        assert page.evaluate("() => window.__samePage") == 1  # recovered in place, no reload
        # The user's state is kept: every key of the URL before the outage keeps its value (views
        # may have written their own defaults since), and the experiment and selection are the same.
        before, after = parse_qs(urlsplit(url_before).query), parse_qs(urlsplit(page.url).query)
        assert {k: v for k, v in after.items() if k in before} == before
        assert after["experiment"] == [exp_id] and after["sel"] == [base.run_id]
        assert js_errors == []
        page.screenshot(path=str(Path(__file__).resolve().parents[1] / "screenshots" / "team-recovered.png"))
    finally:
        context.close()
        served.stop()
        wait_healthy(postgres_server.url, postgres_server.process, postgres_server.log_path, 90)


def test_gunicorn_workers_share_the_snapshot_cache(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("gunicorn")
    build_random_forest(client, exp, 30, seed=2)
    port = free_port()
    env = {**os.environ, "MLFLOW_CC_CACHE_DIR": str(tmp_path / "cache"),
           **gunicorn_env(host="127.0.0.1", port=port, workers=2, auth="none", allow_remote=False,
                          tracking_uri=uri, experiment="gunicorn")}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen([gunicorn, "-c", "python:dash_app.gunicorn_conf", "dash_app.wsgi:server"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    pages = 0

    def four_pages_served() -> bool:
        nonlocal pages
        try:
            # The layout for a page of the experiment (its Referer) reads the forest.
            request = urllib.request.Request(f"http://127.0.0.1:{port}/_dash-layout",
                                             headers={"Referer": f"http://127.0.0.1:{port}/?experiment={exp}"})
            with urllib.request.urlopen(request, timeout=30) as resp:
                pages += resp.status == 200
        except OSError:
            pass  # not listening yet
        return pages >= 4

    try:
        wait_until(four_pages_served, timeout=120, interval=0.2, message=lambda: f"4 pages from gunicorn ({pages} so far)")
        assert pages == 4
        snapshots = list((tmp_path / "cache" / "snapshots").glob("*.json"))
        assert len(snapshots) == 1  # one per store + experiment + user, shared by both workers
    finally:
        os.killpg(proc.pid, 15)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "Booting worker" in out and out.count("Booting worker") >= 2
