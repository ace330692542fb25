"""Hardening that needs no sign-in server: the Host allow-list, weak secrets, flag writes, metric text.

Every test drives the real app (``dash_app.wsgi.build_app``) on a real sqlite MLflow store over
HTTP (Flask's test client, or a real server process), as a browser or a hostile page would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dash_http import call, comparison_context, outputs
from mlflow.tracking import MlflowClient

import mlflow_cc as cc
from dash_app.serving import Settings
from dash_app.wsgi import build_app
from mlflow_cc import contract
from testing.local_server import free_port


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_CC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_CC_SECRET_KEY", raising=False)
    monkeypatch.delenv("MLFLOW_CC_ALLOWED_HOSTS", raising=False)
    yield f"sqlite:///{tmp_path / 'mlflow.db'}"


def _model(uri: str, experiment: str, name: str, **metrics: float) -> str:
    with cc.log_base_model(name, experiment=experiment, tracking_uri=uri) as model:
        model.log_metrics(metrics or {"accuracy": 0.9})
    return model.run_id


def _app(uri: str, experiment: str, **settings: Any) -> Any:
    base: dict[str, Any] = {"tracking_uri": uri, "auth": "none", "allow_remote": False, "experiment": experiment,
                            "mlflow_ui_url": None, "refresh_ms": 3000}
    return build_app(Settings(**{**base, **settings}))


def _state(web: Any, experiment_id: str, selection: list[str]) -> dict[str, Any]:
    """The page state the app builds for a URL (the first callback of every page load)."""
    search = f"?experiment={experiment_id}&sel={','.join(selection)}"
    return outputs(call(web, "ov-state.data", {("ov-url-first", "data"): search}))["ov-state"]["data"]


# -- Host allow-list ------------------------------------------------------------------------------

def test_requests_for_another_host_name_are_refused(store: str) -> None:
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 gets 400, not the app."""
    _model(store, "hosts", "m")
    web = _app(store, "hosts").server.test_client()
    for host in ("evil.example", "evil.example:8050", "127.0.0.1.evil.example", "localhost.evil.example"):
        for path in ("/", "/_dash-layout", "/_dash-dependencies"):
            resp = web.get(path, headers={"Host": host})
            assert resp.status_code == 400, (host, path)
            assert b"MLFLOW_CC_ALLOWED_HOSTS" in resp.data and host.encode() not in resp.data
        assert web.post("/_dash-update-component", json={}, headers={"Host": host}).status_code == 400
    for host in ("localhost", "localhost:8050", "127.0.0.1:1234", "[::1]:8050", "LOCALHOST:80"):
        assert web.get("/", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_from_the_environment(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _model(store, "hosts-env", "m")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_CC_EXPERIMENT", "hosts-env")
    monkeypatch.setenv("MLFLOW_CC_ALLOWED_HOSTS", "app.example, *.corp.example")
    web = build_app().server.test_client()  # the wsgi app, configured from the environment only
    for host in ("app.example", "app.example:443", "cc.corp.example:8443", "127.0.0.1:8050"):
        assert web.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "corp.example.evil.example", "xcorp.example"):
        assert web.get("/", headers={"Host": host}).status_code == 400, host
    monkeypatch.setenv("MLFLOW_CC_ALLOWED_HOSTS", "*")  # the check turned off on purpose
    assert build_app().server.test_client().get("/", headers={"Host": "evil.example"}).status_code == 200


def test_cli_ui_takes_allowed_hosts(store: str, tmp_path: Path) -> None:
    """``mlflow-cc ui --allowed-hosts``, a real server process, asked with real HTTP requests."""
    _model(store, "hosts-cli", "m")
    port = free_port()
    env = {**os.environ, "MLFLOW_CC_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLFLOW_CC_ALLOWED_HOSTS", None)
    log = (tmp_path / "ui.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow_cc.cli", "ui", "--tracking-uri", store, "--experiment",
                             "hosts-cli", "--port", str(port), "--allowed-hosts", "app.example"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()
            try:
                first = requests.get(url, timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
                time.sleep(0.2)
        assert first.status_code == 200
        assert requests.get(url, headers={"Host": "app.example:8050"}, timeout=30).status_code == 200
        assert requests.get(url, headers={"Host": "evil.example"}, timeout=30).status_code == 400
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


# -- secrets ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", ["change-me", "secret", "changeme", "x" * 40, "short-but-random-Q7f",
                                    "change-me-change-me-change-me-change-me", "abababababababababababababababab"])
def test_weak_or_example_secrets_are_refused_at_startup(store: str, monkeypatch: pytest.MonkeyPatch,
                                                       secret: str) -> None:
    monkeypatch.setenv("MLFLOW_CC_SECRET_KEY", secret)
    settings = Settings(tracking_uri="http://127.0.0.1:9", auth="mlflow", allow_remote=False, experiment=None,
                        mlflow_ui_url=None, refresh_ms=3000)
    with pytest.raises(ValueError, match="MLFLOW_CC_SECRET_KEY") as err:
        build_app(settings)
    assert "secrets.token_urlsafe" in str(err.value)  # says how to make a good one
    monkeypatch.setenv("MLFLOW_CC_SECRET_KEY", "8Kq2v-3nRZ_xw9LpT4mA0sYc7EeHbUjD1fGiNoQk")
    build_app(settings)  # a long random one is fine


def test_gunicorn_refuses_the_example_secret(tmp_path: Path) -> None:
    from dash_app.serving import gunicorn_env

    env = {**os.environ, "MLFLOW_CC_CACHE_DIR": str(tmp_path / "cache"), "MLFLOW_CC_SECRET_KEY": "change-me",
           **gunicorn_env(host="127.0.0.1", port=free_port(), workers=1, auth="mlflow", allow_remote=False,
                          tracking_uri="http://127.0.0.1:9")}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen([gunicorn, "-c", "python:dash_app.gunicorn_conf", "dash_app.wsgi:server"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until it exits, or a worker boots (it should not)
            lines.append(line)
            if "Booting worker" in line:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
    out = "".join(lines)
    assert "Booting worker" not in out and proc.returncode != 0, out
    assert "MLFLOW_CC_SECRET_KEY is an example value" in out


# -- flags --------------------------------------------------------------------------------------------

def test_a_flag_is_written_only_to_a_model_of_the_experiment_on_screen(store: str) -> None:
    client = MlflowClient(store)
    mine = _model(store, "flags-mine", "mine")
    other = _model(store, "flags-other", "other")
    exp = client.get_experiment_by_name("flags-mine").experiment_id
    web = _app(store, "flags-mine").server.test_client()
    assert web.get("/").status_code == 200
    state = _state(web, exp, [mine])
    cmp = comparison_context(web, state)
    assert [m["run_id"] for m in cmp["models"]] == [mine]

    def flag(target: Any) -> str:
        resp = call(web, "cmp-flag-msg.children", {("cmp-flag-add", "n_clicks"): 1,
                                                   ("cmp-flag-target", "value"): target,
                                                   ("cmp-flag-note", "value"): "look here",
                                                   ("cmp-ctx", "data"): cmp})
        return outputs(resp)["cmp-flag-msg"]["children"]

    # A browser that sends another experiment's run id (or garbage) is refused, shown as a message.
    assert flag(json.dumps([other, "model"])) == "not saved: not a model of this experiment"
    assert flag(json.dumps(["0" * 32, "model"])) == "not saved: not a model of this experiment"
    assert flag(json.dumps([mine, "everything"])) == "not saved: not a model or one of its instances"
    assert flag("{not json").startswith("not saved")
    assert not [k for k in client.get_run(other).data.tags if k.startswith(contract.TAG_FLAG_PREFIX)]
    assert flag(json.dumps([mine, "model"])) == "flag saved to the model's MLflow run"
    assert [k for k in client.get_run(mine).data.tags if k.startswith(contract.TAG_FLAG_PREFIX)]


# -- metric unit and format ---------------------------------------------------------------------------

def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _figures(value: Any) -> Iterator[dict[str, Any]]:
    """Every Plotly figure (a dict with data and layout) inside a callback's answer."""
    if isinstance(value, dict):
        if "data" in value and "layout" in value:
            yield value
            return
        for v in value.values():
            yield from _figures(v)
    elif isinstance(value, list):
        for v in value:
            yield from _figures(v)


def test_metric_unit_and_format_reach_figures_only_as_text(store: str) -> None:
    """Experiment tags are user text: Plotly renders HTML and expands %{...} in what it draws."""
    unit = "<img src=x onerror=alert(1)>%{meta}"
    bad_format = '.1%<img src=x onerror="alert(2)">%{x}%'
    cc.set_metric_info("accuracy", direction="max", unit=unit, format=bad_format, primary=True,
                       experiment="metric-text", tracking_uri=store)
    cc.set_metric_info("latency", direction="min", unit=unit, format=".2f", primary=True, experiment="metric-text",
                       tracking_uri=store)
    base = _model(store, "metric-text", "base", accuracy=0.91, latency=3.5)
    with cc.derive_model(base, "prune", {"sparsity": 0.5}, name="pruned", tracking_uri=store) as m:
        m.log_metrics({"accuracy": 0.88, "latency": 2.0})
    exp = MlflowClient(store).get_experiment_by_name("metric-text").experiment_id
    web = _app(store, "metric-text").server.test_client()
    assert web.get("/").status_code == 200
    state = _state(web, exp, [base, m.run_id])
    view = outputs(call(web, "ov-view.data", {("ov-state", "data"): state}))["ov-view"]["data"]
    answers = [outputs(call(web, "ov-details.children", {("ov-view", "data"): view})),
               outputs(call(web, "ov-map.figure", {("ov-view", "data"): view}))]
    figures = [f for a in answers for f in _figures(a)]
    assert len(figures) >= 3  # the map and one Selection Details chart per primary metric
    drawn = [s for f in figures for s in _strings(f)]
    assert not [s for s in drawn if "<img" in s or "%{meta}" in s or "%{x}%" in s]
    shown = " ".join(drawn)
    assert "&lt;img src=x onerror=alert(1)&gt;&#37;{meta}" in shown  # the unit, whole, shown as typed
    version = outputs(call(web, "ov-version.data", {("ov-state", "data"): state}))["ov-version"]["data"]
    status = json.dumps(outputs(call(web, "ov-status.children", {("ov-version", "data"): version,
                                                                 ("ov-view", "data"): view})))
    assert "is not a number format spec" in status and "using '.4g'" in status  # a warning, not a failure


def test_a_flag_is_removed_only_from_a_model_of_the_experiment_on_screen(store: str) -> None:
    from dash_http import remove_flag_call

    from mlflow_cc.track.flags import add_flag

    client = MlflowClient(store)
    mine = _model(store, "unflag-mine", "mine")
    other = _model(store, "unflag-other", "other")
    exp = client.get_experiment_by_name("unflag-mine").experiment_id
    on_mine, on_other = add_flag(client, mine, "keep?"), add_flag(client, other, "not yours")
    web = _app(store, "unflag-mine").server.test_client()
    assert web.get("/").status_code == 200
    cmp = comparison_context(web, _state(web, exp, [mine]))

    def remove(run_id: str, flag_id: str) -> str:
        return outputs(remove_flag_call(web, cmp, run_id, flag_id))["cmp-flag-msg"]["children"]

    def tags(run_id: str) -> list[str]:
        return [k for k in client.get_run(run_id).data.tags if k.startswith(contract.TAG_FLAG_PREFIX)]

    # A browser that sends another experiment's run, or a flag the run does not have, is refused.
    assert remove(other, on_other.id) == "not removed: not a model of this experiment"
    assert remove(mine, on_other.id) == "not removed: the flag is gone already"
    assert remove(mine, "../" + on_mine.id) == "not removed: the flag is gone already"
    assert tags(other) == [contract.TAG_FLAG_PREFIX + on_other.id] and len(tags(mine)) == 1
    # A redrawn list (buttons with no click) removes nothing.
    assert remove_flag_call(web, cmp, mine, on_mine.id, clicks=0).status_code == 204
    assert remove(mine, on_mine.id) == "flag removed from the model's MLflow run"
    assert tags(mine) == []
