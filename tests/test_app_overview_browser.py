"""Compression Overview in a real browser (Playwright + Debian Chromium) on a real sqlite store.

The app is started once for the module; each test opens a fresh page and the browser
console must stay free of errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, ServedApp, serve, watched_page
from playwright.sync_api import expect
from waiting import INFLIGHT, TIMEOUT_S, settle, wait_until, wait_until_or_false

from dash_app.app import create_app
from dash_app.state import parse_query
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.track.tracking import derive_model
from testing.synthetic import build_study_shape

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
EXPERIMENT = "overview-browser"

TRACE_IDS = """([graph, name]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  if (!g || !g.data) return null;
  const t = g.data.find(d => d.name === name);
  return t ? Array.from(t.customdata) : [];
}"""
NODE_XY = """([graph, rid]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  for (const t of g._fullData) {
    if (t.name !== 'models' && t.name !== 'filtered out') continue;
    const i = Array.from(t.customdata).indexOf(rid);
    if (i < 0) continue;
    const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
    return [r.left + xa._offset + xa.l2p(xa.d2l(t.x[i])), r.top + ya._offset + ya.l2p(ya.d2l(t.y[i]))];
  }
  return null;
}"""
#: True once Plotly has the point with this customdata under the pointer (a click then picks it).
HOVERED = """([graph, cd]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  return !!(g && (g._hoverdata || []).some(p => p.customdata === cd
    || (Array.isArray(p.customdata) && p.customdata[0] === cd)));
}"""
MAP_READY = """() => { const g = document.querySelector('#ov-map .js-plotly-plot');
  return !!(g && g.data && g.data.some(t => t.name === 'models')); }"""

#: The labels drawn above the map's column handles (a text trace: the text Plotly put on the screen).
COLUMN_LABELS = """() => { const t = Array.from(document.querySelectorAll('#ov-map .scatterlayer .trace'))
  .find(el => el.__data__ && el.__data__[0].trace.name === 'column labels');
  return t ? Array.from(t.querySelectorAll('.textpoint')).map(e => e.textContent) : []; }"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('overview') / 'mlflow.db'}"
    runs = build_study_shape(EXPERIMENT, tracking_uri=uri)
    with derive_model(runs["mag50"][0], "distill", {"temperature": 2.0}, name="mag50_distilled",
                      inputs={"teacher": runs["base"][0]}, tracking_uri=uri) as child:
        child.log_metrics({"accuracy": 0.95, "size_bytes": 150_000.0, "latency_ms": 1.2})
    reader = ExperimentReader(EXPERIMENT, uri)
    ids = {k: v[0] for k, v in runs.items()} | {"mag50_distilled": child.run_id}
    served = serve(create_app(reader, refresh_ms=1000))
    yield {"uri": uri, "ids": ids, "served": served, "reader": reader}
    served.stop()


@pytest.fixture
def page(browser: Browser, study: dict[str, Any]) -> Iterator[Any]:
    """A fresh page; the test fails if the console reported an error."""
    pg, ctx, errors = watched_page(browser, INFLIGHT, TIMEOUT_S, viewport={"width": 1600, "height": 1000})
    yield pg
    ctx.close()
    assert errors == [], errors


def open_app(page: Any, served: ServedApp, query: str = "") -> None:
    page.goto(served.url + "/" + query)
    page.wait_for_function(MAP_READY)
    page.wait_for_function("() => document.querySelector('#ov-status').innerText.includes('models')")
    settle(page)


def ids_in(page: Any, graph: str, trace: str) -> list[str]:
    return page.evaluate(TRACE_IDS, [graph, trace]) or []


def wait_selected(page: Any, graph: str, expected: set[str], timeout: float = TIMEOUT_S) -> None:
    wait_until(lambda: set(ids_in(page, graph, "selected")) == expected, timeout,
               lambda: f"the selection in {graph} to be {sorted(expected)} (it is {sorted(ids_in(page, graph, 'selected'))})")


def hover(page: Any, graph: str, cd: str, x: float, y: float) -> None:
    """Move the pointer onto the point and wait until Plotly reports it hovered."""
    def hovered() -> bool:
        # A redraw (e.g. the rings restyled after a click in the other graph) clears Plotly's
        # hover; like a hand, nudge the pointer again until the point is hovered.
        page.mouse.move(x + 1, y + 1)
        page.mouse.move(x, y)
        return wait_until_or_false(lambda: page.evaluate(HOVERED, [graph, cd]), 2.0)
    wait_until(hovered, message=f"{cd} hovered in {graph}", interval=0.05)


def click_node(page: Any, graph: str, rid: str, shift: bool = False) -> None:
    settle(page)
    xy = page.evaluate(NODE_XY, [graph, rid])
    assert xy, f"{rid} is not drawn in {graph}"
    hover(page, graph, rid, xy[0], xy[1])
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(xy[0], xy[1])
    if shift:
        page.keyboard.up("Shift")


def hoverable(page: Any, graph: str, candidates: list[str], click: bool = False, shift: bool = False) -> str:
    """The first candidate the pointer can hover in ``graph`` (a small marker may lie under a
    larger neighbour, where Plotly's closest-point hover picks the neighbour); ``click``: click it
    while it is hovered."""
    settle(page)
    for rid in candidates:
        xy = page.evaluate(NODE_XY, [graph, rid])
        if not xy:
            continue
        page.mouse.move(xy[0] + 1, xy[1] + 1)
        page.mouse.move(xy[0], xy[1])
        if wait_until_or_false(lambda r=rid: page.evaluate(HOVERED, [graph, r]), 3.0):
            if click:
                if shift:
                    page.keyboard.down("Shift")
                page.mouse.click(xy[0], xy[1])
                if shift:
                    page.keyboard.up("Shift")
            return rid
    raise AssertionError(f"none of {candidates} can be hovered in {graph}")


def drag(page: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    settle(page)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * i / 10, y0 + (y1 - y0) * i / 10)
    page.mouse.up()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    settle(page)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_map_shows_every_model_and_status(page: Any, study: dict[str, Any]) -> None:
    open_app(page, study["served"])
    assert set(ids_in(page, "ov-map", "models")) == set(study["ids"].values())
    assert page.evaluate("() => document.querySelector('#ov-map .js-plotly-plot').data"
                         ".some(t => t.name.startsWith('extra input'))")
    n = len(study["ids"])
    page.wait_for_function(f"() => document.querySelector('#ov-status').innerText.includes('{n} models')")
    headers = page.evaluate(COLUMN_LABELS)
    assert headers[:3] == ["base", "prune", "calibrate"] and "quantize" in headers
    shot(page, "overview-study.png")


def test_click_shift_click_and_box_select_are_linked(page: Any, study: dict[str, Any]) -> None:
    ids = study["ids"]
    open_app(page, study["served"])
    click_node(page, "ov-map", ids["mag50"])
    wait_selected(page, "ov-scatter", {ids["mag50"]})
    click_node(page, "ov-map", ids["grad50"], shift=True)
    wait_selected(page, "ov-scatter", {ids["mag50"], ids["grad50"]})
    wait_selected(page, "ov-map", {ids["mag50"], ids["grad50"]})
    # a box around the quantize column of the map
    quant = {ids[k] for k in ("q8", "mag50_q", "mag50_cal_q", "mag70_ft_q", "grad50_q", "grad50_cal_q")}
    pts = [page.evaluate(NODE_XY, ["ov-map", r]) for r in quant]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    drag(page, min(xs) - 12, min(ys) - 8, max(xs) + 12, max(ys) + 8)
    wait_selected(page, "ov-scatter", quant)
    # and back: a click in the scatterplot selects in the map
    click_node(page, "ov-scatter", ids["base"])
    wait_selected(page, "ov-map", {ids["base"]})
    shot(page, "overview-linked-selection.png")


def test_column_header_selects_the_column(page: Any, study: dict[str, Any]) -> None:
    ids = study["ids"]
    open_app(page, study["served"])
    xy = page.evaluate("""() => { const g = document.querySelector('#ov-map .js-plotly-plot');
      const t = g._fullData.find(d => d.name === 'columns');
      const labels = g._fullData.find(d => d.name === 'column labels');
      const i = Array.from(t.customdata)
        .findIndex(c => c === 'col:' + labels.x[Array.from(labels.text).indexOf('calibrate')]);
      const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
      return [r.left + xa._offset + xa.l2p(t.x[i]), r.top + ya._offset + ya.l2p(t.y[i]), t.customdata[i]]; }""")
    hover(page, "ov-map", xy[2], xy[0], xy[1])
    page.mouse.click(xy[0], xy[1])
    forest = study["reader"].forest()
    calibrated = {r for r, n in forest.nodes.items() if n.operation == "calibrate"}
    assert {ids["mag50_cal"], ids["grad50_cal"]} <= calibrated
    wait_selected(page, "ov-scatter", calibrated)


def test_filter_brush_makes_excluded_models_unselectable(page: Any, study: dict[str, Any]) -> None:
    ids = study["ids"]
    open_app(page, study["served"], "?f=accuracy:")
    page.wait_for_selector(".cc-filter .js-plotly-plot .main-svg")
    box = page.evaluate("""() => { const g = document.querySelector('.cc-filter .js-plotly-plot');
      const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
      return [r.left + xa._offset + xa.l2p(0.9), r.left + xa._offset + xa._length - 2,
              r.top + ya._offset + 5, r.top + ya._offset + ya._length - 5]; }""")
    drag(page, box[0], box[2], box[1], box[3])
    page.wait_for_function("() => document.querySelector('#ov-filter-summary').innerText.includes('within budget')")
    page.wait_for_function("() => location.search.includes('f=accuracy%3A0') || location.search.includes('f=accuracy:0')")
    budget = parse_query(page.evaluate("() => location.search"))["filters"]["accuracy"]
    assert 0.89 < budget[0] < 0.91
    reader_forest = study["reader"].forest()
    expected_out = {r for r, n in reader_forest.nodes.items()
                    if not budget[0] <= n.metrics["accuracy"] <= budget[1]}
    assert expected_out, "the study has models below 90% accuracy"
    for graph in ("ov-map", "ov-scatter"):  # the scatterplot redraws after the map
        wait_until(lambda g=graph: set(ids_in(page, g, "filtered out")) == expected_out,
                   message=lambda g=graph: f"{g} to fade exactly the models outside the budget "
                                           f"(it fades {sorted(ids_in(page, g, 'filtered out'))})")
    keep = ids["base"]
    click_node(page, "ov-map", keep)
    wait_selected(page, "ov-map", {keep})
    wait_selected(page, "ov-scatter", {keep})
    victim = hoverable(page, "ov-map", sorted(expected_out))
    inside = sorted(set(reader_forest.nodes) - expected_out - {keep})
    # Clicks are applied in order in the browser. A click on a model within the budget after
    # each click on the excluded one proves the first was handled before the selection is read.
    click_node(page, "ov-map", victim, shift=True)  # excluded: cannot be added
    witness = hoverable(page, "ov-map", inside, click=True, shift=True)
    wait_selected(page, "ov-map", {keep, witness})
    settle(page)
    assert set(ids_in(page, "ov-map", "selected")) == {keep, witness}
    assert set(ids_in(page, "ov-scatter", "selected")) == {keep, witness}
    # nor selected alone: the click selects nothing
    victim = hoverable(page, "ov-scatter", sorted(expected_out), click=True)
    witness = hoverable(page, "ov-scatter", inside, click=True, shift=True)
    wait_selected(page, "ov-scatter", {witness})
    settle(page)
    assert victim not in ids_in(page, "ov-scatter", "selected")
    assert victim not in ids_in(page, "ov-map", "selected")
    shot(page, "overview-filters.png")


def test_selection_details_for_descendants(page: Any, study: dict[str, Any]) -> None:
    ids = study["ids"]
    open_app(page, study["served"], f"?sel={ids['mag50']}")
    page.click("#ov-add-descendants")
    want = {ids[k] for k in ("mag50", "mag50_q", "mag50_cal", "mag50_cal_q", "mag50_distilled")}
    wait_selected(page, "ov-map", want)
    # the details follow the map
    expect(page.locator("#ov-details")).to_contain_text("5 models selected", timeout=TIMEOUT_S * 1000)
    page.wait_for_selector("#ov-details .js-plotly-plot .main-svg")
    # the explanation's bar charts draw their bars (the app's Plotly bundle registers bar traces)
    page.wait_for_selector("#ov-details .js-plotly-plot .barlayer .bars path")
    links = page.eval_on_selector_all("#ov-details a", "els => els.map(e => e.href)")
    exp_id = study["reader"].experiment_id
    assert f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{ids['mag50']}" in links
    shot(page, "overview-details.png")


def test_refine_comparison_when_two_variables_are_not_enough(page: Any, study: dict[str, Any]) -> None:
    open_app(page, study["served"])
    base = study["ids"]["base"]
    click_node(page, "ov-map", base)
    wait_selected(page, "ov-map", {base})
    page.click("#ov-add-descendants")
    before = {base, *study["reader"].forest().descendants(base)}
    wait_selected(page, "ov-map", before)
    page.wait_for_selector(".cc-refine")
    expect(page.locator("#ov-details")).to_contain_text("Refine Comparison", timeout=TIMEOUT_S * 1000)
    shot(page, "overview-refine.png")
    # Pick the first value of the first variable, apply: the selection narrows to the models
    # that take that value, in the map as well.
    page.locator(".cc-refine-row button").first.click()
    page.locator(".dash-dropdown-content input[type=checkbox]").first.click()
    page.keyboard.press("Escape")
    page.click("#ov-refine-apply")
    after = wait_until(lambda: (set(ids_in(page, "ov-map", "selected")) != before
                                and set(ids_in(page, "ov-map", "selected"))),
                       message="the refined selection in the map")
    assert after and after < before


def test_copied_url_reopens_the_same_view(page: Any, study: dict[str, Any], browser: Browser) -> None:
    ids = study["ids"]
    open_app(page, study["served"], "?f=accuracy:")
    page.check("input[value='step']")
    page.wait_for_function("() => location.search.includes('layout=step')")
    click_node(page, "ov-map", ids["mag70"])
    wait_selected(page, "ov-map", {ids["mag70"]})
    page.wait_for_function(f"() => location.search.includes('{ids['mag70']}')")
    url = page.url
    headers = page.evaluate(COLUMN_LABELS)
    other = browser.browser.new_context(viewport={"width": 1600, "height": 1000})
    p2 = other.new_page()
    p2.set_default_timeout(TIMEOUT_S * 1000)
    p2.add_init_script(INFLIGHT)
    try:
        p2.goto(url)
        p2.wait_for_function(MAP_READY)
        wait_selected(p2, "ov-map", {ids["mag70"]})
        wait_selected(p2, "ov-scatter", {ids["mag70"]})
        assert p2.is_checked("input[value='step']")
        assert p2.evaluate(COLUMN_LABELS) == headers
        p2.wait_for_selector(".cc-filter .js-plotly-plot")
        settle(p2)
        ours = ("experiment", "layout", "color", "size", "x", "y", "sel", "filters")
        before, after = parse_query(url.split("?", 1)[1]), parse_query(p2.url.split("?", 1)[1])
        assert {k: after.get(k) for k in ours} == {k: before.get(k) for k in ours}
    finally:
        other.close()


def test_new_run_appears_without_losing_the_selection(page: Any, study: dict[str, Any]) -> None:
    ids = study["ids"]
    open_app(page, study["served"], f"?sel={ids['mag90']}")
    wait_selected(page, "ov-map", {ids["mag90"]})
    with derive_model(ids["mag90"], "quantize", {"bits": 4}, name="mag90_q4",
                      tracking_uri=study["uri"]) as child:
        child.log_metrics({"accuracy": 0.5, "size_bytes": 50_000.0, "latency_ms": 1.0})
    page.wait_for_function(f"() => {{ const g = document.querySelector('#ov-map .js-plotly-plot');"
                           f" const t = g.data.find(d => d.name === 'models');"
                           f" return Array.from(t.customdata).includes('{child.run_id}'); }}",
                           timeout=TIMEOUT_S * 1000)
    page.wait_for_function(f"() => {{ const g = document.querySelector('#ov-scatter .js-plotly-plot');"
                           f" const t = g.data.find(d => d.name === 'models');"
                           f" return Array.from(t.customdata).includes('{child.run_id}'); }}",
                           timeout=TIMEOUT_S * 1000)
    wait_selected(page, "ov-map", {ids["mag90"]})


def test_metric_pickers_are_native_selects(page: Any, study: dict[str, Any]) -> None:
    """Colour, size, the axes, What-if's metrics and Filters' "add" are native selects
    (dash_app/select.py); each choice is made from the list, as a person makes it."""
    open_app(page, study["served"])
    names = sorted(study["reader"].forest().metric_names())
    for sel in ("#ov-color", "#ov-size", "#ov-x", "#ov-y", "#ov-whatif-eff", "#ov-whatif-q", "#ov-filter-add"):
        assert page.evaluate(f"() => document.querySelector('{sel}').tagName") == "SELECT", sel
    shown = page.evaluate("() => Array.from(document.querySelector('#ov-color').options).map(o => o.text)")
    assert sorted(shown) == names, shown
    # Filters' picker: a histogram is added, and the picker shows its placeholder again
    assert page.evaluate("() => document.querySelector('#ov-filter-add').selectedOptions[0].text") \
        == "add a histogram for a metric…"
    page.select_option("#ov-filter-add", "latency_ms")
    page.wait_for_selector(".cc-filter .js-plotly-plot .main-svg")
    wait_until(lambda: page.evaluate("() => document.querySelector('#ov-filter-add').value") == "",
               message="the filter picker back on its placeholder")
    assert page.locator(".cc-filter").count() == 1
    # size: the map's key follows, and the URL keeps the choice
    page.select_option("#ov-size", "latency_ms")
    wait_until(lambda: "node size: latency_ms" in page.locator("#ov-map-key").inner_text(),
               message="the map's key for the new size metric")
    wait_until(lambda: parse_query(page.evaluate("() => location.search")).get("size") == "latency_ms",
               message="size=latency_ms in the URL")
    settle(page)
    assert page.evaluate("() => document.querySelector('#ov-size').value") == "latency_ms"
