"""Hostile strings in a shared store (names, tags, params, operations, class names, instance text) stay text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from browser import Browser, ServedApp, launch, serve
from mlflow.tracking import MlflowClient
from waiting import INFLIGHT, TIMEOUT_S, settle

from dash_app.app import create_app
from mlflow_cc import contract
from mlflow_cc.artifacts import log_dataset, log_outputs
from mlflow_cc.read.reader import ExperimentReader

#: True once the map and the scatterplot draw every one of these runs.
DRAWN = """(ids) => ['ov-map', 'ov-scatter'].every(graph => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  const t = g && g.data && g.data.find(d => d.name === 'models');
  return !!t && ids.every(r => Array.from(t.customdata).includes(r));
})"""
#: Each payload sets window.__pwned if it ever runs as code or markup.
IMG = '<img src=x onerror="window.__pwned=(window.__pwned||0)+1">'
SCRIPT = "<script>window.__pwned=1</script>"
LINK = '<a href="javascript:window.__pwned=1">x</a>'
NAME = f"base {IMG}"
OPERATION = f"prune{SCRIPT}"
CLASSES = [f"cat {IMG}", f"dog {SCRIPT}"]
TEXT = f"instance text {LINK} {IMG}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment(f"hostile {IMG}")
    n = 12
    ids = [f"i{k}" for k in range(n)]
    labels = np.arange(n) % 2
    dataset = log_dataset(exp, f"data {SCRIPT}", pd.DataFrame({"instance_id": ids, "label": labels}),
                          pd.DataFrame({"instance_id": ids, "kind": "text", "value": [f"{TEXT} #{k}" for k in ids]}),
                          class_names=CLASSES, client=client)
    runs = []
    for k, (name, parent) in enumerate([(NAME, None), (f"child {SCRIPT}", 0), (f"grandchild {LINK}", 1)]):
        tags = {contract.TAG_KIND: contract.KIND_MODEL, "note": f"tag {IMG}"}
        if parent is not None:
            tags.update({contract.TAG_PARENT: runs[parent], contract.TAG_OPERATION: OPERATION,
                         contract.TAG_OPERATION_PARAMS: json.dumps({"method": f"m {IMG}", "sparsity": 0.5})})
        rid = client.create_run(exp, run_name=name, tags=tags).info.run_id
        client.log_param(rid, "op.method", f"m {IMG}")
        client.log_param(rid, "comment", f"param {SCRIPT}")
        client.log_metric(rid, "accuracy", 0.9 - 0.1 * k)
        logits = np.random.default_rng(k).normal(size=(n, 2))
        log_outputs(rid, ids, logits, labels, dataset=f"data {SCRIPT}", dataset_run_id=dataset, client=client)
        client.set_terminated(rid)
        runs.append(rid)
    app = serve(create_app(ExperimentReader(exp, uri), refresh_ms=2000))
    yield {"app": app, "exp": exp, "runs": runs}
    app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = launch()
    yield b
    b.close()


def _open(browser: Browser, url: str) -> tuple[Any, Any, list[str]]:
    context = browser.browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.add_init_script(INFLIGHT)
    events: list[str] = []
    page.on("dialog", lambda d: (events.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: events.append(f"pageerror: {e}"))
    page.goto(url)
    return context, page, events


def _assert_inert(page: Any, events: list[str]) -> None:
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"], a[href^=\"javascript:\"]').length") == 0
    assert not [e for e in events if e.startswith("dialog")]


def test_overview_shows_hostile_strings_as_text(hostile: dict[str, Any], browser: Browser) -> None:
    app: ServedApp = hostile["app"]
    ctx, page, events = _open(browser, f"{app.url}/?experiment={hostile['exp']}&sel={','.join(hostile['runs'])}")
    try:
        page.wait_for_function("() => document.body.innerText.includes('child <script>')")
        # every figure drawn (map, scatterplot, selection details), then no request in flight
        for graph in ("#ov-map", "#ov-scatter", "#ov-details"):
            page.wait_for_selector(f"{graph} .js-plotly-plot .main-svg")
        page.wait_for_function(DRAWN, arg=hostile["runs"])
        settle(page)
        _assert_inert(page, events)
        body = page.inner_text("body")
        assert NAME in body  # the literal string, markup and all
        assert page.locator(".js-plotly-plot").count() >= 1
    finally:
        ctx.close()


def test_comparison_shows_class_names_and_instance_text_as_text(hostile: dict[str, Any], browser: Browser) -> None:
    app: ServedApp = hostile["app"]
    url = (f"{app.url}/?experiment={hostile['exp']}&sel={','.join(hostile['runs'])}&tab=comparison"
           "&rows=instances")
    ctx, page, events = _open(browser, url)
    try:
        page.wait_for_function("() => document.body.innerText.includes('instance text')", timeout=90_000)
        page.locator(".cmp-beh .ag-row").first.wait_for()
        settle(page)
        _assert_inert(page, events)
        assert LINK in page.inner_text("body")
        page.goto(url.replace("rows=instances", "rows=classes"))
        page.wait_for_function("() => document.body.innerText.includes('cat <img')", timeout=90_000)
        page.locator(".cmp-beh .ag-row").first.wait_for()
        settle(page)
        _assert_inert(page, events)
    finally:
        ctx.close()
