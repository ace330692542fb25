"""The Compression Overview at 50,000 models in a real browser (Playwright + Debian Chromium).

The store is a real sqlite MLflow store bulk-written in seconds (testing/bulk_store.py) with the
reader's snapshot seeded as the app saves it after a first read, so the app opens the way a user
reopening a big experiment sees it. The page must open (the map drawn within its budget, the
scatterplot as a density layer), a model found by name must be selected, revealed in the map,
ringed in the scatterplot and explained in Selection Details, and a box drawn on the density
layer must select the models inside it. The console stays free of errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, serve, watched_page
from waiting import INFLIGHT, TIMEOUT_S, settle, wait_until

from dash_app.app import create_app
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.snapshot import SnapshotStore
from testing.bulk_store import bulk_random_forest, seed_snapshot

N = 50_000
EXPERIMENT = "overview-50k"
SHOTS = Path("/work/screens/overview-speed")
#: Page loads at this size wait on a busy machine for minutes, not forever.
LONG_MS = TIMEOUT_S * 4000

TRACE_IDS = """([graph, name]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  if (!g || !g.data) return null;
  const t = g.data.find(d => d.name === name);
  return t ? Array.from(t.customdata || []) : [];
}"""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("overview50k")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ids = bulk_random_forest(uri, EXPERIMENT, N)
    assert seed_snapshot(uri, EXPERIMENT, folder / "snapshots") == N
    # full_every_s: no periodic full re-read of 50,000 runs during the test (minutes on a busy machine)
    reader = ExperimentReader(EXPERIMENT, uri, snapshot=SnapshotStore(folder / "snapshots"), full_every_s=3600)
    assert len(reader.forest()) == N and reader.opened_from_snapshot
    served = serve(create_app(reader, refresh_ms=3000))
    yield {"ids": ids, "url": served.url}
    served.stop()


@pytest.fixture
def page(browser: Browser, big: dict[str, Any]) -> Iterator[Any]:
    pg, ctx, errors = watched_page(browser, INFLIGHT, LONG_MS / 1000, viewport={"width": 1600, "height": 1000})
    yield pg
    ctx.close()
    assert errors == [], errors


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("""() => { const g = document.querySelector('#ov-map .js-plotly-plot');
        return !!(g && g.data && g.data.some(t => t.name === 'models')); }""", timeout=LONG_MS)
    page.wait_for_function("""() => { const g = document.querySelector('#ov-scatter .js-plotly-plot');
        return !!(g && g.data && g.data.some(t => t.name === 'density')
                  && g.querySelector('.heatmaplayer image')); }""", timeout=LONG_MS)
    settle(page, timeout=TIMEOUT_S * 4)


def test_opens_and_finds_a_model_by_name(page: Any, big: dict[str, Any]) -> None:
    open_page(page, big["url"])
    status = page.locator("#ov-status").inner_text()
    assert f"{N} models" in status, status
    info = page.locator("#ov-map-info").inner_text()
    shown = int(info.split(" of ")[0])
    assert 0 < shown < N and f"of {N} models shown" in info, info  # the rest collapsed into badges
    assert page.evaluate(TRACE_IDS, ["ov-map", "collapsed"])  # every model is reachable from a badge
    # the scatterplot draws no marker per model: a density layer
    assert page.evaluate(TRACE_IDS, ["ov-scatter", "models"]) == []

    name, rid = f"model-{N * 5 // 8 + 87}", big["ids"][N * 5 // 8 + 87]
    assert rid not in page.evaluate(TRACE_IDS, ["ov-map", "models"])  # collapsed away at first
    page.locator("#ov-find").click()
    page.locator(".dash-dropdown-content input").first.fill(name)
    option = page.locator(".dash-dropdown-content [role=option]").filter(has_text=re.compile(f"^{name}$"))
    option.wait_for(timeout=LONG_MS)
    option.click()
    page.wait_for_function("() => document.querySelector('#ov-details h4')"
                           " && document.querySelector('#ov-details h4').textContent === '1 model selected'",
                           timeout=LONG_MS)
    wait_until(lambda: name in page.locator("#ov-details").inner_text(), timeout=TIMEOUT_S * 4)
    # revealed and ringed in the map, ringed in the scatterplot (patched in by the server)
    wait_until(lambda: rid in (page.evaluate(TRACE_IDS, ["ov-map", "models"]) or []), timeout=TIMEOUT_S * 4)
    wait_until(lambda: page.evaluate(TRACE_IDS, ["ov-map", "selected"]) == [rid], timeout=TIMEOUT_S * 4)
    wait_until(lambda: page.evaluate(TRACE_IDS, ["ov-scatter", "selected"]) == [rid], timeout=TIMEOUT_S * 4)
    settle(page, timeout=TIMEOUT_S * 4)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview-50k-found.png"), full_page=False)


def test_a_box_on_the_density_layer_selects_the_models_inside(page: Any, big: dict[str, Any]) -> None:
    open_page(page, big["url"])
    box = page.locator("#ov-scatter .nsewdrag").first.bounding_box()
    assert box is not None
    # a box over the middle of the plot: many models, not all
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    x1, y1 = box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.wait_for_function("() => /^[0-9]+ models selected$/.test("
                           "(document.querySelector('#ov-details h4') || {}).textContent || '')", timeout=LONG_MS)
    count = int(page.locator("#ov-details h4").first.inner_text().split()[0])
    assert 1 < count < N
    ringed = wait_until(lambda: page.evaluate(TRACE_IDS, ["ov-scatter", "selected"]) or None,
                        timeout=TIMEOUT_S * 4)
    assert len(ringed) == count
    page.screenshot(path=str(SHOTS / "overview-50k-box.png"), full_page=False)
