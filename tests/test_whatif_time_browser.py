"""The What-if panel and the map by time, in a real browser on a real sqlite store.

One app for the module (the study of tests/test_app_overview_browser.py, one model left running);
each test opens a fresh page whose console must stay free of errors. Screenshots go to
/work/screens/whatif-time/ (or $CC_SCREENS).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from browser import HOVERED, Browser, serve, watched_page
from mlflow import MlflowClient
from waiting import INFLIGHT, TIMEOUT_S, settle, wait_until, wait_until_or_false

from dash_app.app import create_app
from mlflow_cc import contract
from mlflow_cc.analysis.whatif import whatif
from mlflow_cc.read.reader import ExperimentReader
from testing.synthetic import build_study_shape

SHOTS = Path(os.environ.get("CC_SCREENS", "/work/screens/whatif-time"))
EXPERIMENT = "whatif-time-browser"
MONTHS = "whatif-time-months"

#: (x, y) on screen of the point with this customdata in a graph's traces (None: not drawn).
POINT_XY = """([graph, cd, traces]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  if (!g || !g._fullData) return null;
  for (const t of g._fullData) {
    if (traces && !traces.includes(t.name)) continue;
    const i = Array.from(t.customdata || []).indexOf(cd);
    if (i < 0) continue;
    const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
    return [r.left + xa._offset + xa.l2p(xa.d2l(t.x[i])), r.top + ya._offset + ya.l2p(ya.d2l(t.y[i]))];
  }
  return null;
}"""
TRACE = """([graph, name]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  if (!g || !g._fullData) return null;
  const t = g._fullData.find(d => d.name === name);
  return t ? {ids: Array.from(t.customdata || []), x: Array.from(t.x || [])} : null;
}"""
STEPS = ["within the current budget", "needs a looser budget"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('whatif') / 'mlflow.db'}"
    runs = build_study_shape(EXPERIMENT, tracking_uri=uri)
    ids = {k: v[0] for k, v in runs.items()}
    MlflowClient(uri).update_run(ids["grad70_ft"], status="RUNNING")  # still in progress
    reader = ExperimentReader(EXPERIMENT, uri)
    months = log_months(uri)
    served = serve(create_app(reader, refresh_ms=1000))
    yield {"uri": uri, "ids": ids, "served": served, "reader": reader, "months": months}
    served.stop()


def log_months(uri: str) -> str:
    """An experiment whose models were logged over four months (runs with given start/end times,
    through MLflow's client under the storage contract); returns its id."""
    client = MlflowClient(uri)
    exp = client.create_experiment(MONTHS)
    t0, day = 1_767_225_600_000, 86_400_000  # 2026-01-01 UTC
    plan = [("base", None, 0), ("prune 50%", "base", 9), ("prune 90%", "base", 10), ("finetune", "prune 50%", 40),
            ("quantize", "finetune", 75), ("prune 70%", "base", 118)]
    ids: dict[str, str] = {}
    for i, (name, parent, start_day) in enumerate(plan):
        tags = {contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION), contract.TAG_KIND: contract.KIND_MODEL,
                contract.TAG_STEP: "0" if parent is None else "1"}
        if parent is not None:
            tags |= {contract.TAG_PARENT: ids[parent], contract.TAG_OPERATION: name.split()[0],
                     contract.TAG_OPERATION_PARAMS: json.dumps({"variant": i})}
        start = t0 + start_day * day
        run = client.create_run(exp, start_time=start, tags=tags, run_name=name)
        client.log_metric(run.info.run_id, "accuracy", 0.9 - 0.01 * i)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 2 * 3_600_000)
        ids[name] = run.info.run_id
    return exp


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    pg, ctx, errors = watched_page(browser, INFLIGHT, TIMEOUT_S, viewport={"width": 1600, "height": 1100},
                                   accept_downloads=True)
    yield pg
    ctx.close()
    assert errors == [], errors


def open_app(page: Any, study: dict[str, Any], query: str = "") -> None:
    page.goto(study["served"].url + "/" + query)
    page.wait_for_function("() => { const g = document.querySelector('#ov-map .js-plotly-plot');"
                           " return !!(g && g.data && g.data.some(t => t.name === 'models')); }")
    page.wait_for_function("() => document.querySelector('#ov-status').innerText.includes('models')")
    settle(page)


def steps_shown(page: Any) -> list[str]:
    """Run ids of the staircase's steps as drawn, tightest budget first (by x, size: increasing)."""
    pts: list[tuple[float, str]] = []
    for name in STEPS:
        t = page.evaluate(TRACE, ["ov-whatif-graph", name])
        if t:
            pts += list(zip(t["x"], t["ids"]))
    return [rid for _, rid in sorted(pts)]


def click_point(page: Any, graph: str, cd: str, traces: list[str] | None = None) -> None:
    """Hover the point like a hand until Plotly reports it, then click it."""
    settle(page)
    xy = page.evaluate(POINT_XY, [graph, cd, traces])
    assert xy, f"{cd} is not drawn in {graph}"

    def hovered() -> bool:
        page.mouse.move(xy[0] + 1, xy[1] + 1)
        page.mouse.move(xy[0], xy[1])
        return bool(wait_until_or_false(lambda: page.evaluate(HOVERED, [graph, cd]), 2.0))
    wait_until(hovered, message=f"{cd} hovered in {graph}", interval=0.05)
    page.mouse.click(xy[0], xy[1])


def query_of(page: Any) -> dict[str, list[str]]:
    """The page's URL query as the browser has it (Playwright's page.url can lag a pushState)."""
    return parse_qs(page.evaluate("() => window.location.search").lstrip("?"))


def shot(page: Any, name: str, selector: str | None = None) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    settle(page)
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(SHOTS / name), **({} if selector else {"full_page": True}))


def test_whatif_draws_the_staircase_and_a_click_selects_the_step(page: Any, study: dict[str, Any]) -> None:
    ids, reader = study["ids"], study["reader"]
    # an accuracy budget (at most 0.965) leaves out the two best models; size is the budget that relaxes
    forest = reader.forest()
    budgets = {"accuracy": [0.0, 0.965], "size_bytes": [0.0, 120_000.0]}
    expected = whatif(forest, reader.metric_info, "size_bytes", "accuracy", budgets)
    full = whatif(forest, reader.metric_info, "size_bytes", "accuracy")
    assert len(expected.steps) >= 3 and expected.outside_other == 2 and expected.steps != full.steps
    exp_id = forest.nodes[ids["base"]].experiment_id
    open_app(page, study, f"?experiment={exp_id}&weff=size_bytes&wq=accuracy"
             "&f=accuracy:0.0:0.965&f=size_bytes:0.0:120000.0")
    wait_until(lambda: steps_shown(page) == [s.run_id for s in expected.steps],
               message=lambda: f"the steps {[s.run_id for s in expected.steps]} (drawn: {steps_shown(page)})")
    # the table: one row per step, distinct model titles, the current budget's step in bold
    rows = page.locator("#ov-whatif-table tbody tr")
    assert rows.count() == len(expected.steps)
    titles = page.locator("#ov-whatif-table tbody td.cc-col-name").all_inner_texts()
    assert len(set(titles)) == len(titles)
    current = page.locator("#ov-whatif-table tr.cc-whatif-current")
    assert current.count() == 1 and expected.current_step is not None
    assert current.locator("td.cc-col-name").inner_text() == titles[expected.current_step]
    summary = page.locator("#ov-whatif-summary").inner_text()
    assert "left out by them" in summary and "current budget reaches" in summary
    headers = page.locator("#ov-whatif-table th").all_inner_texts()
    assert headers[1:3] == ["size_bytes at most", "best accuracy"]
    xtitle = page.evaluate("() => document.querySelector('#ov-whatif-graph .js-plotly-plot')"
                           "._fullLayout.xaxis.title.text")
    assert xtitle.startswith("budget: size_bytes at most")
    # the graph's legend is HTML below it (Plotly draws none)
    legend = page.locator("#ov-whatif-legend").inner_text()
    assert "best accuracy within the budget" in legend and "within the current budget" in legend, legend
    assert page.evaluate("() => !document.querySelector('#ov-whatif-graph .legend')")
    shot(page, "whatif-panel.png", "#ov-whatif-card")

    # a click on a step beyond the current budget selects its model, as a map click would
    target = expected.steps[-1].run_id
    click_point(page, "ov-whatif-graph", target, STEPS)
    settle(page)
    name = forest.nodes[target].name
    wait_until(lambda: "1 model selected" in page.locator("#ov-details").inner_text(),
               message="Selection Details to show one model")
    wait_until(lambda: name in page.locator("#ov-details").inner_text(), message=f"{name} in Selection Details")
    wait_until(lambda: (page.evaluate(TRACE, ["ov-map", "selected"]) or {}).get("ids") == [target],
               message="the map's ring on the model")
    wait_until(lambda: query_of(page).get("sel") == [target], message="the selection in the URL")
    # and a click on another step replaces the selection
    other = expected.steps[0].run_id
    click_point(page, "ov-whatif-graph", other, STEPS)
    wait_until(lambda: query_of(page).get("sel") == [other], message="the second step selected")
    shot(page, "whatif-overview.png")


def test_whatif_table_exports_csv(page: Any, study: dict[str, Any]) -> None:
    reader = study["reader"]
    forest = reader.forest()
    open_app(page, study, "?weff=sparsity&wq=accuracy&f=sparsity:0.5:0.9")
    expected = whatif(forest, reader.metric_info, "sparsity", "accuracy", {"sparsity": [0.5, 0.9]})
    wait_until(lambda: page.locator("#ov-whatif-table tbody tr").count() == len(expected.steps),
               message="the table's rows")
    # sparsity: higher is better, so the budget is "at least", relaxing downwards (axis reversed)
    assert len(expected.steps) >= 3 and expected.current == 0.5
    assert page.locator("#ov-whatif-table th").all_inner_texts()[1] == "sparsity at least"
    lo, hi = page.evaluate("() => document.querySelector('#ov-whatif-graph .js-plotly-plot')"
                           "._fullLayout.xaxis.range")
    assert lo > hi  # reversed: the looser (lower) budgets to the right
    shot(page, "whatif-sparsity-reversed.png", "#ov-whatif-card")
    with page.expect_download() as dl:
        page.click("#ov-whatif-csv-btn")
    download = dl.value
    assert download.suggested_filename == "what-if-sparsity-accuracy.csv"
    text = Path(download.path()).read_text()
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["run_id"] for r in table] == [s.run_id for s in expected.steps]
    assert [float(r["budget sparsity"]) for r in table] == [s.budget for s in expected.steps]
    assert [float(r["best accuracy"]) for r in table] == pytest.approx([s.quality for s in expected.steps])
    shown = page.locator("#ov-whatif-table tbody td.cc-col-name").all_inner_texts()
    assert [r["model"] for r in table] == shown
    # another budget metric picked by hand: the panel follows and the URL keeps it
    page.select_option("#ov-whatif-eff", "latency_ms")  # a native select (dash_app/select.py)
    wait_until(lambda: query_of(page).get("weff") == ["latency_ms"], message="weff=latency_ms in the URL")
    wait_until(lambda: page.locator("#ov-whatif-table th").all_inner_texts()[1:2] == ["latency_ms at most"],
               message="the table's budget column for latency_ms")


def map_x(page: Any) -> dict[str, float]:
    t = page.evaluate(TRACE, ["ov-map", "models"]) or {"ids": [], "x": []}
    return dict(zip(t["ids"], t["x"]))


def test_map_by_time_keeps_url_collapse_and_focus(page: Any, study: dict[str, Any]) -> None:
    ids, reader = study["ids"], study["reader"]
    forest = reader.forest()
    open_app(page, study)
    page.locator("#ov-layout input[value=time]").check()
    page.wait_for_function("() => document.querySelector('#ov-map .js-plotly-plot')._fullLayout.xaxis.type === 'date'")
    wait_until(lambda: query_of(page).get("layout") == ["time"], message="layout=time in the URL")
    settle(page)
    # x is each run's start time: the map's order is the order the models were logged in
    xs = map_x(page)
    assert set(xs) == set(forest.nodes)
    for rid, x in xs.items():
        assert abs(x - forest.nodes[rid].start_time) < 1.0, rid
    # the map's key above the figure names both marks (Plotly draws no legend)
    page.wait_for_function("() => document.querySelector('#ov-map-key').innerText.includes('in progress')")
    legend = page.evaluate("() => document.querySelector('#ov-map-key').innerText")
    assert "in progress (started → now)" in legend
    assert "dead end: nothing derived from it, though later models were" in legend
    assert page.evaluate("() => document.querySelector('#ov-map .js-plotly-plot')._fullLayout.xaxis.title.text") \
        == "when the run started"
    shot(page, "map-by-start-time.png")

    # collapse mag50 (select it, Collapse selected): its subtree becomes a badge
    click_point(page, "ov-map", ids["mag50"], ["models"])
    wait_until(lambda: query_of(page).get("sel") == [ids["mag50"]], message="mag50 selected")
    settle(page)
    page.click("#ov-collapse")
    hidden = set(forest.descendants(ids["mag50"]))
    wait_until(lambda: not (set(map_x(page)) & hidden) and map_x(page), message="mag50's subtree collapsed")
    badge = page.evaluate(TRACE, ["ov-map", "collapsed"])
    assert badge and f"expand:{ids['mag50']}" in badge["ids"]
    wait_until(lambda: query_of(page).get("collapse") == [ids["mag50"]], message="collapse in the URL")
    # focus on grad50's subtree
    click_point(page, "ov-map", ids["grad50"], ["models"])
    wait_until(lambda: query_of(page).get("sel") == [ids["grad50"]], message="grad50 selected")
    settle(page)
    page.click("#ov-focus")
    subtree = {ids["grad50"], *forest.descendants(ids["grad50"])}
    wait_until(lambda: set(map_x(page)) == subtree, message="the map focused on grad50's subtree")
    wait_until(lambda: query_of(page).get("focus") == [ids["grad50"]], message="focus in the URL")
    settle(page)
    url = page.evaluate("() => location.search")

    # by end time, then reload: the URL restores layout, focus and collapse
    page.locator("#ov-layout input[value=time_end]").check()
    wait_until(lambda: query_of(page).get("layout") == ["time_end"], message="layout=time_end in the URL")
    settle(page)
    assert page.evaluate("() => location.search") != url
    page.reload()
    page.wait_for_function("() => { const g = document.querySelector('#ov-map .js-plotly-plot');"
                           " return !!(g && g._fullLayout && g._fullLayout.xaxis.type === 'date'); }")
    settle(page)
    assert page.locator("#ov-layout input[value=time_end]").is_checked()
    wait_until(lambda: set(map_x(page)) == subtree, message="the focus restored after a reload")
    assert page.evaluate("() => document.querySelector('#ov-map .js-plotly-plot')._fullLayout.xaxis.title.text") \
        .startswith("when the run ended")
    end = {r: forest.nodes[r].end_time for r in subtree}
    for rid, x in map_x(page).items():
        if not forest.nodes[rid].is_running:
            assert abs(x - float(end[rid] or 0)) < 1.0, rid
    shot(page, "map-by-end-time-focused.png")


def test_map_by_time_reads_months(page: Any, study: dict[str, Any]) -> None:
    """Four months of work: the axis names the months; every model is labelled by its name."""
    open_app(page, study, f"?experiment={study['months']}&layout=time")
    page.wait_for_function("() => document.querySelector('#ov-map .js-plotly-plot')._fullLayout.xaxis.type === 'date'")
    settle(page)
    ticks = page.locator("#ov-map .xtick text").all_text_contents()
    assert {"Jan 2026", "Feb 2026", "Mar 2026", "Apr 2026"} <= set(ticks), ticks
    assert len(map_x(page)) == 6
    labels = page.locator("#ov-map .scatterlayer .textpoint text").all_text_contents()
    assert {"base", "prune 50%", "prune 90%", "finetune", "quantize", "prune 70%"} <= set(labels), labels
    shot(page, "map-by-start-time-months.png", "#ov-map")
