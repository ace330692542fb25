"""What the Compression Overview's first load costs the browser and the server (issue 13), in Chromium.

The overview page must not carry what only the Performance Comparison uses: no grid library, no
comparison work on the server, no Babel polyfill; and a load that changes nothing in the state
sends no request that rewrites it. The comparison, opened afterwards, still loads its grid and
shows its rows. Every wait is on a condition; no timing is asserted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser import Browser, serve, watched_page
from comparison_fixtures import log_models

from dash_app import fast_start, vendor
from dash_app.serving import Settings
from dash_app.wsgi import build_app

EXPERIMENT = "page-load"
LONG = 120_000  # ms: two shared cores
SETTLED = """() => { const m = document.querySelector('#ov-map .js-plotly-plot');
  const s = document.querySelector('#ov-scatter .js-plotly-plot');
  const status = document.querySelector('#ov-status');
  return !!(m && m.data && s && s.data && m.querySelector('.scatterlayer .trace')
            && status && /\\d+ models/.test(status.textContent)); }"""
GRID_ROWS = """() => { const el = document.querySelector('.cmp-beh .cmp-grid');
  if (!el || !window.dash_ag_grid || !window.dash_ag_grid.getApi) return 0;
  let api = null;
  try { api = dash_ag_grid.getApi(JSON.parse(el.id)); } catch (e) { return 0; }
  return api ? api.getDisplayedRowCount() : 0; }"""
QUIET = """(since) => performance.getEntriesByType('resource').filter(e => e.name.includes('_dash-update'))
  .every(e => e.responseEnd > 0 && performance.now() - e.responseEnd > since)"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Four models with outputs and layers, served as ``mlflow-cc ui`` builds the app."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('page-load') / 'mlflow.db'}"
    logged = log_models(EXPERIMENT, uri, n_models=4, n_instances=200)
    app = build_app(Settings(tracking_uri=uri, auth="none", allow_remote=False, experiment=logged.experiment_id,
                             mlflow_ui_url=None, refresh_ms=3000))
    web = serve(app)
    yield {"url": web.url, "exp": logged.experiment_id, "ids": logged.run_ids, "app": app}
    web.stop()


def _page(browser: Browser) -> tuple[Any, Any, list[str], list[dict[str, Any]]]:
    page, ctx, errors = watched_page(browser, None, LONG / 1000, viewport={"width": 1600, "height": 1000})
    calls: list[dict[str, Any]] = []

    def on_response(resp: Any) -> None:
        if "_dash-update-component" in resp.url:
            calls.append({**json.loads(resp.request.post_data or "{}"), "status": resp.status})

    page.on("response", on_response)
    return ctx, page, errors, calls


def _settle(page: Any) -> None:
    """The overview drawn and no callback answered in the last second (the page is idle)."""
    page.wait_for_function(SETTLED, timeout=LONG)
    page.wait_for_function(QUIET, arg=1000, timeout=LONG, polling=200)


def test_overview_loads_no_comparison_code_or_work(served: dict[str, Any], browser: Browser) -> None:
    ctx, page, errors, calls = _page(browser)
    try:
        page.goto(f"{served['url']}/?experiment={served['exp']}&sel={','.join(served['ids'][:3])}")
        _settle(page)
        scripts = page.evaluate("() => Array.from(document.scripts).map(s => s.src).filter(Boolean)")
        assert not [s for s in scripts if "dash_ag_grid" in s]  # the grid library waits for a grid
        if fast_start.drop_polyfill(served["app"]):  # the regenerator runtime was installed
            assert not [s for s in scripts if "polyfill@" in s]
            assert page.evaluate("() => typeof window.regeneratorRuntime") == "object"
        plotly = [s for s in scripts if "plotly" in s.rsplit("/", 1)[-1]]
        if vendor.BUNDLE.exists():  # make install built (or fetched) the page's one Plotly bundle
            assert len(plotly) == 1 and "assets/vendor/plotly.min.js" in plotly[0], plotly
            traces = page.evaluate("() => Object.keys(window.Plotly.PlotSchema.get().traces)")
            assert {"scatter", *vendor.TRACES} <= set(traces), traces
        outputs = [c.get("output", "") for c in calls]
        # no comparison is computed while its page is hidden (the server answers "no update")
        assert {c["status"] for c in calls if "cmp-ctx.data" in c.get("output", "")} <= {204}, calls
        # the page was drawn from its own URL: nothing asked the server to re-read it or rewrite the state
        assert not [o for o in outputs if o.startswith("..ov-state.data")], outputs
        assert page.inner_text("#ov-status").startswith(f"{EXPERIMENT}: 4 models")
        details = page.inner_text("#ov-details")
        assert details.startswith("3 models selected") and "prune 50%" in details, details  # explained

        page.click("text=Performance Comparison")
        page.wait_for_function(f"() => ({GRID_ROWS})() >= 10", timeout=LONG)  # 10 classes
        scripts = page.evaluate("() => Array.from(document.scripts).map(s => s.src).filter(Boolean)")
        assert [s for s in scripts if "dash_ag_grid" in s]
        assert [c for c in calls if "cmp-ctx.data" in c.get("output", "") and c["status"] == 200]
        assert page.inner_text("#cmp-models").startswith("2 models compared")
    finally:
        ctx.close()
    assert errors == [], errors


def test_a_changed_url_is_read_once_and_written_back(served: dict[str, Any], browser: Browser) -> None:
    """A page whose layout was built without its query (no Referer) still reads its URL."""
    ctx, page, errors, calls = _page(browser)
    try:
        page.set_extra_http_headers({"Referer": ""})
        page.goto(f"{served['url']}/?experiment={served['exp']}&layout=step&sel={served['ids'][1]}")
        _settle(page)
        page.wait_for_function("() => document.querySelector('#ov-layout input[value=step]').checked", timeout=LONG)
        assert "layout=step" in page.url and served["ids"][1] in page.url
        assert page.inner_text("#ov-details").startswith("1 model selected")
        # the layout came without a state (no Referer): the browser handed the URL to the server once
        reads = [c for c in calls if c.get("output", "").startswith("..ov-state.data") and c["status"] == 200]
        assert len(reads) == 1, [c.get("output") for c in calls]
    finally:
        ctx.close()
    assert errors == [], errors
