"""The Behaviours view of generation outputs in a real browser (Playwright + Debian Chromium): a
base language model and two derived ones answering 30 questions (written with
``log_generation_outputs``); the answers with the words changed vs the base marked, the
answer-change metric, server-side sorting by it, the most frequent answer changes, and user text
(a prompt and answers holding "<b>", "<i>") shown as text, never as markup."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, serve
from generation_fixtures import (
    CHANGES,
    QUESTIONS,
    GenerationExperiment,
    ValueExperiment,
    log_generation_experiment,
    log_value_experiment,
)
from playwright.sync_api import expect
from waiting import INFLIGHT, TIMEOUT_S, settle

from dash_app.app import create_app
from mlflow_cc.read.reader import ExperimentReader

EXPERIMENT = "generation-browser"
BEH_GRID = ".cmp-beh .cmp-grid"
#: The loaded rows of the Behaviours grid, in display order, via dash-ag-grid's API.
GRID_ROWS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el || !window.dash_ag_grid) return null;
  let api = null;
  try { api = dash_ag_grid.getApi(JSON.parse(el.id)); } catch (e) { return null; }
  if (!api) return null;
  const rows = [];
  api.forEachNode(n => { if (n.data) rows.push(n.data); });
  return {rows: rows, count: api.getDisplayedRowCount()};
}"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One sqlite store: the generation experiment, a regression and an embedding one; one app."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('generation') / 'mlflow.db'}"
    out: dict[str, Any] = {"generation": log_generation_experiment(EXPERIMENT, uri),
                           "regression": log_value_experiment("regression", "regression-browser", uri),
                           "embedding": log_value_experiment("embedding", "embedding-browser", uri)}
    out["app"] = serve(create_app(ExperimentReader(EXPERIMENT, uri), refresh_ms=2000))
    yield out
    out["app"].stop()


@pytest.fixture(scope="module")
def app(store: dict[str, Any]) -> tuple[Any, GenerationExperiment]:
    return store["app"], store["generation"]


@pytest.fixture(scope="module")
def shots() -> Path:
    path = Path(os.environ.get("MLFLOW_CC_SCREENS", Path(__file__).resolve().parents[1] / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _open(browser: Browser, url: str) -> tuple[Any, Any, list[str]]:
    context = browser.browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.add_init_script(INFLIGHT)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return context, page, errors


def _rows(page: Any, min_rows: int = 1) -> list[dict[str, Any]]:
    page.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({BEH_GRID!r}); return r && r.rows.length >= {min_rows}; }}")
    return page.evaluate(GRID_ROWS, BEH_GRID)["rows"]


def _cell(page: Any, row: str, col: str) -> Any:
    return page.locator(f"{BEH_GRID} .ag-row[row-id='{row}'] .ag-cell[col-id='{col}']").first


def test_generation_behaviours_answers_metric_and_sort(app: tuple[Any, GenerationExperiment], browser: Browser,
                                                       shots: Path) -> None:
    served, logged = app
    url = (f"{served.url}/?experiment={logged.experiment_id}&sel={','.join(logged.run_ids)}&tab=comparison"
           "&rows=instances&metric=answer_changed")
    ctx, page, errors = _open(browser, url)
    try:
        rows = _rows(page, len(QUESTIONS))
        settle(page)
        # The metric control shows the answer-change rate, and the columns show it per model.
        expect(page.locator("#cmp-beh-metric")).to_contain_text("answer change rate")
        expect(page.locator("#cmp-beh-crumb")).to_contain_text("answer change rate")
        assert [r["key"] for r in rows] == logged.ids  # unsorted: the dataset's order
        changed70 = {f"q{i:02d}" for i in CHANGES["prune 70%"]}
        assert {r["key"] for r in rows if r["v2"] == 1} == changed70
        assert all(r["v0"] == 0 for r in rows)
        # The header of the 70 % model: the share of changed answers.
        share = len(changed70) / len(QUESTIONS) * 100
        expect(page.locator(f"{BEH_GRID} .ag-header-cell[col-id='v2'] .cmp-h-value")).to_have_text(f"{share:.1f}%")

        # q10: "the blue whale" -> "the blue shark": only "shark" is marked; "the blue" is not.
        cell = _cell(page, "q10", "v1")
        expect(cell.locator(".cmp-word-changed")).to_have_text(["shark"])
        expect(cell.locator(".cmp-answer")).to_have_text("the blue shark")
        expect(_cell(page, "q10", "v0").locator(".cmp-word-changed")).to_have_count(0)
        expect(_cell(page, "q10", "name")).to_contain_text("the blue whale")  # the reference
        expect(_cell(page, "q10", "preview")).to_contain_text("What is the largest animal?")  # the prompt
        # User text is text: the "<b>" prompt, reference and "<i>" answer show literally, no element made.
        page.screenshot(path=str(shots / "generation-instances-answer-changed.png"))
        page.evaluate("(sel) => dash_ag_grid.getApi(JSON.parse(document.querySelector(sel).id)).ensureIndexVisible(18)",
                      BEH_GRID)
        expect(_cell(page, "q18", "preview")).to_contain_text("<b> or <i>?")
        expect(_cell(page, "q18", "v1").locator(".cmp-word-changed")).to_have_text(["<i>"])
        assert page.locator(f"{BEH_GRID} b, {BEH_GRID} i, {BEH_GRID} script").count() == 0
        page.screenshot(path=str(shots / "generation-instances-markup-as-text.png"))

        # Sort by the 70 % model's column (header clicks: ascending, then descending), on the server.
        header = page.locator(f"{BEH_GRID} .ag-header-cell[col-id='v2'] .ag-header-cell-label")
        header.click()
        page.wait_for_function("() => location.search.includes('bsort=v2%3Aasc') || location.search.includes('bsort=v2:asc')")
        unchanged = [k for k in logged.ids if k not in changed70]
        page.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({BEH_GRID!r});"
                               f" return r && r.rows.length >= 30 && r.rows[0].key === {unchanged[0]!r}; }}")
        assert [r["key"] for r in _rows(page, 30)] == unchanged + [k for k in logged.ids if k in changed70]
        header.click()
        page.wait_for_function("() => location.search.includes('bsort=v2%3Adesc') || location.search.includes('bsort=v2:desc')")
        expected = [k for k in logged.ids if k in changed70] + unchanged
        page.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({BEH_GRID!r});"
                               f" return r && r.rows.length >= 30 && r.rows[0].key === {expected[0]!r}; }}")
        assert [r["key"] for r in _rows(page, 30)] == expected
        first_row = page.locator(f"{BEH_GRID} .ag-center-cols-container .ag-row[row-index='0']")
        expect(first_row).to_have_attribute("row-id", expected[0])
        # The most frequent answer changes (base -> model) per model: yes -> no, 4 times, for the 70 % model.
        expect(page.locator("#cmp-beh-changes-title")).to_have_text("Most frequent answer changes (base → model)")
        panel = page.locator("#cmp-beh-changes")
        expect(panel).to_contain_text("yes → no")
        expect(panel.locator("li").filter(has_text="yes → no")).to_contain_text("4 (13.3%)")
        settle(page)
        page.screenshot(path=str(shots / "generation-instances-sorted.png"), full_page=True)
    finally:
        ctx.close()
    assert errors == [], errors


def test_generation_subgroups_relative(app: tuple[Any, GenerationExperiment], browser: Browser, shots: Path) -> None:
    served, logged = app
    url = (f"{served.url}/?experiment={logged.experiment_id}&sel={','.join(logged.run_ids)}&tab=comparison"
           "&rows=subgroups&metric=exact_match&rel=rel")
    ctx, page, errors = _open(browser, url)
    try:
        rows = {r["key"]: r for r in _rows(page, 3)}
        assert set(rows) == {"topic=geography", "topic=science", "topic=history"}
        # Science under the 70 % model: 5 of 10 answers changed, 5 exact matches lost.
        assert rows["topic=science"]["v2"] == pytest.approx(-0.5)
        expect(_cell(page, "topic=science", "v2").locator(".cmp-bar-text")).to_have_text("-50.0%")
        settle(page)
        page.screenshot(path=str(shots / "generation-subgroups-exact-match.png"))
    finally:
        ctx.close()
    assert errors == [], errors


def test_regression_and_embedding_rows(store: dict[str, Any], browser: Browser, shots: Path) -> None:
    served = store["app"]
    reg: ValueExperiment = store["regression"]
    url = (f"{served.url}/?experiment={reg.experiment_id}&sel={','.join(reg.run_ids)}&tab=comparison"
           "&rows=instances&metric=abs_error")
    ctx, page, errors = _open(browser, url)
    try:
        rows = {r["key"]: r for r in _rows(page, 12)}
        expect(page.locator("#cmp-beh-metric")).to_contain_text("absolute error")
        # Base: |i - (i + 0.5)| = 0.5 everywhere; the quantized model drifts by 3 on the south site.
        assert rows["x00"]["v0"] == 0.5 and rows["x00"]["v1"] == 0.5 and rows["x07"]["v1"] == 2.5
        expect(page.locator(f"{BEH_GRID} .ag-header-cell[col-id='name']")).to_contain_text("target")
        expect(_cell(page, "x07", "name")).to_have_text("7.5")
        expect(_cell(page, "x07", "v1").locator(".cmp-word-changed")).to_have_text(["10"])  # 7 -> 10
        expect(_cell(page, "x01", "v1").locator(".cmp-word-changed")).to_have_count(0)
        settle(page)
        page.screenshot(path=str(shots / "regression-instances-abs-error.png"))
        emb: ValueExperiment = store["embedding"]
        page.goto(f"{served.url}/?experiment={emb.experiment_id}&sel={','.join(emb.run_ids)}&tab=comparison"
                  "&rows=subgroups&metric=cosine_to_base")
        rows = {r["key"]: r for r in _rows(page, 2)}
        assert rows["site=north"]["v1"] == pytest.approx(1.0) and rows["site=south"]["v1"] == pytest.approx(0.0, abs=1e-6)
        expect(page.locator("#cmp-beh-crumb")).to_contain_text("cosine to base")
        settle(page)
        page.screenshot(path=str(shots / "embedding-subgroups-cosine.png"))
        # No classes in embedding outputs: the grid is empty and the status says what to choose instead.
        page.locator("#cmp-beh-rows input[value='classes']").check()
        expect(page.locator("#cmp-beh-status")).to_contain_text("embedding outputs have no classes")
        expect(page.locator("#cmp-beh-changes-title")).to_have_text("Most frequent prediction changes (base → model)")
    finally:
        ctx.close()
    assert errors == [], errors
