"""*Register model* in a real browser: from Selection Details (one model selected) and from the
Performance Comparison; the confirmation shows and the version is in MLflow's registry after."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, serve, watched_page
from mlflow.tracking import MlflowClient
from playwright.sync_api import expect
from waiting import INFLIGHT, TIMEOUT_S, settle

import mlflow_cc
from dash_app.app import create_app
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.track.register import TAG_LINEAGE, TAG_LINEAGE_TEXT, TAG_METRIC_PREFIX

SHOTS = Path("/work/screens/autolog")
WAIT = TIMEOUT_S * 1000  # ms: the machine may be busy
EXPERIMENT = "register-browser"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('register') / 'mlflow.db'}"
    mlflow_cc.set_metric_info("accuracy", primary=True, format=".1%", experiment=EXPERIMENT, tracking_uri=uri)
    with mlflow_cc.log_base_model("cnn", experiment=EXPERIMENT, tracking_uri=uri) as base:
        base.log_metrics({"accuracy": 0.97, "size_bytes": 400_000})
    with mlflow_cc.derive_model(base, "prune", {"method": "global_magnitude", "sparsity": 0.9}) as pruned:
        pruned.log_metrics({"accuracy": 0.95, "size_bytes": 400_000})
    with mlflow_cc.derive_model(pruned, "quantize", {"method": "dynamic", "bits": 8, "modules": "Linear"}) as small:
        small.log_metrics({"accuracy": 0.94, "size_bytes": 110_000})
    reader = ExperimentReader(EXPERIMENT, uri)
    served = serve(create_app(reader, refresh_ms=1000))
    yield {"uri": uri, "exp": reader.experiment_id, "base": base.run_id, "pruned": pruned.run_id,
           "small": small.run_id, "url": served.url}
    served.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    pg, ctx, errors = watched_page(browser, INFLIGHT, TIMEOUT_S, viewport={"width": 1500, "height": 1000})
    yield pg
    ctx.close()
    assert errors == [], errors


def test_register_from_selection_details(page: Any, store: dict[str, Any]) -> None:
    page.goto(f"{store['url']}/?experiment={store['exp']}&sel={store['pruned']},{store['small']}")
    expect(page.locator("#ov-details")).to_contain_text("2 models selected", timeout=WAIT)
    settle(page)
    expect(page.locator("#ov-reg")).to_be_hidden(timeout=WAIT)  # two models: nothing to register

    page.goto(f"{store['url']}/?experiment={store['exp']}&sel={store['small']}")
    expect(page.locator("#ov-details")).to_contain_text("1 model selected", timeout=WAIT)
    form = page.locator("#ov-reg")
    expect(form).to_be_visible(timeout=WAIT)
    expect(page.locator("#ov-reg-alias")).to_have_value("candidate", timeout=WAIT)
    settle(page)
    page.locator("#ov-reg-name").fill("digits-small")
    page.get_by_role("button", name="Register model").click()
    msg = page.locator("#ov-reg-msg")
    expect(msg).to_contain_text("Registered quantize int8 dynamic as digits-small version 1, alias @candidate", timeout=WAIT)
    expect(msg).to_contain_text("cnn → prune 90% magnitude → quantize int8 dynamic", timeout=WAIT)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#ov-reg").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "register_details.png"), full_page=True)

    version = MlflowClient(store["uri"]).get_model_version_by_alias("digits-small", "candidate")
    assert version.run_id == store["small"]
    assert [s["operation"] for s in json.loads(version.tags[TAG_LINEAGE])] == [None, "prune", "quantize"]
    assert version.tags[TAG_LINEAGE_TEXT] == "cnn → prune 90% magnitude → quantize int8 dynamic"
    assert version.tags[TAG_METRIC_PREFIX + "accuracy"] == "0.94"


def test_register_from_the_comparison(page: Any, store: dict[str, Any]) -> None:
    page.goto(f"{store['url']}/?experiment={store['exp']}&sel={store['base']},{store['pruned']}&tab=comparison")
    picker = page.locator("#cmp-reg-model")
    expect(picker).to_contain_text("prune", timeout=WAIT)  # the compressed model, not the base, by default
    settle(page)
    page.locator("#cmp-reg-name").fill("digits-pruned")
    page.locator("#cmp-reg-alias").fill("")
    page.locator("#cmp-reg-btn").click()
    expect(page.locator("#cmp-reg-msg")).to_contain_text("as digits-pruned version 1 — cnn → prune 90% magnitude", timeout=WAIT)
    page.screenshot(path=str(SHOTS / "register_comparison.png"))
    client = MlflowClient(store["uri"])
    (version,) = client.search_model_versions("name = 'digits-pruned'")
    assert version.run_id == store["pruned"] and version.aliases == []

    # A name MLflow refuses: a message, the app keeps working
    page.locator("#cmp-reg-name").fill("bad/name")
    page.locator("#cmp-reg-btn").click()
    expect(page.locator("#cmp-reg-msg")).to_contain_text("not registered: MLflow refused", timeout=WAIT)
    assert [m.name for m in client.search_registered_models()] .count("bad/name") == 0
