"""Performance Comparison in a real browser (Playwright + Debian Chromium) on the case studies.

Built once for the module, in two threads (two sqlite stores, one app each):

* store A: the bias study (digits with rare classes 3 and 8, pruned 10-99 %), a quantized
  digits CNN, and 12 synthetic models (two of them missing artifacts) for screenshots;
* store B: the transformer repair study reduced to the base MiniLM and its per-layer 50 %
  magnitude pruning including the LayerNorm weights.

Every page must keep the browser console free of errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import Browser, serve
from comparison_fixtures import log_models
from mlflow.tracking import MlflowClient
from playwright.sync_api import expect
from waiting import TIMEOUT_S, painted, wait_until

from dash_app.app import create_app
from mlflow_cc import contract
from mlflow_cc.artifacts import load_outputs
from mlflow_cc.read.reader import ExperimentReader

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
SYNTHETIC = "comparison-12"
QUANT = "comparison-quantized"

#: The rows an AG Grid holds (only the loaded blocks for the infinite row model), via dash-ag-grid's API.
GRID_ROWS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el || !window.dash_ag_grid) return null;
  let api = null;
  try { api = dash_ag_grid.getApi(JSON.parse(el.id)); } catch (e) { api = dash_ag_grid.getApi(el.id); }
  if (!api) return null;
  const rows = [];
  api.forEachNode(n => { if (n.data) rows.push(n.data); });
  return {rows: rows, count: api.getDisplayedRowCount()};
}"""
BEH_GRID = ".cmp-beh .cmp-grid"
LAY_GRID = "#cmp-lay-grid"


def _build_store_a(uri: str, out: dict[str, Any]) -> None:
    from mlflow_cc.studies import bias_study
    from mlflow_cc.studies.digits_data import DigitsCNN, load_digits_split, train
    from mlflow_cc.studies.digits_eval import digits_eval_set
    from mlflow_cc.torch import Capture, log_base, quantize

    bias_study.build(uri)
    split = load_digits_split(seed=0)
    model = train(DigitsCNN(), split.x_train, split.y_train, epochs=2, seed=0)
    capture = Capture(digits_eval_set(split), progress=False, latency_runs=1, sample_input=split.x_test[:8])
    base = log_base(model, "digits-cnn", experiment=QUANT, capture=capture, tracking_uri=uri)
    quantize(model, base, capture=capture)
    out["synthetic"] = log_models(SYNTHETIC, uri, n_models=12, n_instances=600, skip_outputs=(5,),
                                  skip_layers=(6,))


def _build_store_b(uri: str, out: dict[str, Any]) -> None:
    from mlflow_cc.studies import transformer_repair as tr
    from mlflow_cc.torch import Capture, log_base, prune

    tokenizer, model = tr.load_minilm()
    eval_set = tr.sentence_eval_set(tokenizer, model)
    sample = {k: v[:4] for k, v in eval_set.inputs.items()}  # type: ignore[union-attr]
    capture = Capture(eval_set, sample_input=sample, progress=False, latency_runs=1,
                      weights_exclude=tr.WEIGHTS_NOT_STORED)
    base = log_base(model, "all-MiniLM-L6-v2", experiment=tr.EXPERIMENT, capture=capture, tracking_uri=uri)
    _, run = prune(model, base, sparsity=0.5, method="local_magnitude", exclude_types=[], capture=capture)
    out["including_norm"] = run.run_id


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("comparison")
    uri_a, uri_b = f"sqlite:///{root / 'a.db'}", f"sqlite:///{root / 'b.db'}"
    out: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(fn: Any, uri: str) -> None:
        try:
            fn(uri, out)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f, u)) for f, u in ((_build_store_a, uri_a), (_build_store_b, uri_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    from mlflow_cc.studies import bias_study, transformer_repair

    app_a = serve(create_app(ExperimentReader(bias_study.EXPERIMENT, uri_a), refresh_ms=2000))
    app_b = serve(create_app(ExperimentReader(transformer_repair.EXPERIMENT, uri_b), refresh_ms=2000))
    yield {"a": app_a, "b": app_b, "uri_a": uri_a, "uri_b": uri_b, **out}
    app_a.stop()
    app_b.stop()


def _open(browser: Browser, url: str, width: int = 1600, height: int = 1000) -> tuple[Any, Any, list[str]]:
    context = browser.browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return context, page, errors


def _experiment(uri: str, name: str) -> tuple[str, list[str], dict[str, str]]:
    reader = ExperimentReader(name, uri)
    nodes = list(reader.forest().walk())
    return reader.experiment_id, [n.run_id for n in nodes], {n.run_id: n.name for n in nodes}


def _url(app: Any, exp: str, run_ids: list[str], query: str) -> str:
    return f"{app.url}/?experiment={exp}&sel={','.join(run_ids)}&tab=comparison&{query}"


def _grid(page: Any, selector: str, min_rows: int = 1, timeout_s: float = 60) -> dict[str, Any]:
    page.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({selector!r}); return r && r.rows.length >= {min_rows}; }}",
                           timeout=timeout_s * 1000)
    return page.evaluate(GRID_ROWS, selector)


def test_bias_study_rare_subgroup_error_increase_at_90(stores: dict[str, Any], browser: Browser) -> None:
    from mlflow_cc.studies import bias_study

    exp, ids, _ = _experiment(stores["uri_a"], bias_study.EXPERIMENT)
    ctx, page, errors = _open(browser, _url(stores["a"], exp, ids, "rows=subgroups&rel=rel&metric=correct"))
    try:
        data = _grid(page, BEH_GRID, 2)
        rows = {r["key"]: r for r in data["rows"]}
        assert set(rows) == {"group=rare", "group=common"}
        client = MlflowClient(stores["uri_a"])
        reader = ExperimentReader(bias_study.EXPERIMENT, stores["uri_a"])
        forest = reader.forest()
        p90 = next(r for r in ids if forest[r].op_params.get("sparsity") == 0.9)
        base = next(r for r in ids if forest[r].depth == 0)
        # Directly from the logged outputs: the rare classes' error at 90 % minus the base's.
        b, m = load_outputs(client, base), load_outputs(client, p90)
        rare = np.isin(b.labels, bias_study.RARE_CLASSES)
        error_increase = (m.predictions[rare] != m.labels[rare]).mean() - (b.predictions[rare] != b.labels[rare]).mean()
        column = page.evaluate(
            "(rid) => { const el = document.querySelector('.cmp-beh .cmp-grid');"
            " const api = dash_ag_grid.getApi(JSON.parse(el.id));"
            " return api.getColumnDefs().findIndex(c => (c.headerComponentParams || {}).title &&"
            " c.headerComponentParams.title.includes(rid)); }", p90)
        col_id = page.evaluate(
            "(i) => { const el = document.querySelector('.cmp-beh .cmp-grid');"
            " return dash_ag_grid.getApi(JSON.parse(el.id)).getColumnDefs()[i].colId; }", column)
        shown = rows["group=rare"][col_id]  # correctness relative to the base = minus the error increase
        assert -shown == pytest.approx(error_increase, abs=1e-4)  # payload keeps 5 significant digits
        text = page.locator(f".cmp-beh .ag-row[row-id='group=rare'] .ag-cell[col-id='{col_id}'] .cmp-bar-text")
        expected_text = f"{'+' if -error_increase > 0 else ''}{-error_increase * 100:.2f}%"
        assert text.inner_text() == expected_text
        # Drill into the rare subgroup: instances, paged on the server.
        page.locator(".cmp-beh .ag-row[row-id='group=rare'] .ag-cell[col-id='name']").click()
        page.wait_for_function("() => location.search.includes('drill=subgroup')")
        data = _grid(page, BEH_GRID, 10)
        assert data["count"] <= int(rare.sum()) + 1 and len(data["rows"]) <= 100
        assert all(r.get("pk") == "image" for r in data["rows"][:5])
        page.wait_for_selector(".cmp-beh img.cmp-thumb")
        assert "rows=instances" in page.url
    finally:
        ctx.close()
    assert errors == [], errors


def test_transformer_layers_sorted_by_change_put_norms_first(stores: dict[str, Any], browser: Browser) -> None:
    from mlflow_cc.studies import transformer_repair

    exp, ids, _ = _experiment(stores["uri_b"], transformer_repair.EXPERIMENT)
    run = stores["including_norm"]
    ctx, page, errors = _open(browser, _url(stores["b"], exp, ids, f"ctab=layers&lview=list&lsort={run}"))
    try:
        data = _grid(page, LAY_GRID, 5, timeout_s=120)
        first = [r["id"] for r in data["rows"][:3]]
        assert all("LayerNorm" in name for name in first), first
        page.locator(".cmp-lay .cmp-hist").first.wait_for()
        # Back to the tree, filtered by name pattern: matching modules and their ancestors only.
        page.locator("#cmp-lay-view input[value='tree']").check()
        page.locator("#cmp-lay-pattern").fill("*attention.output.LayerNorm")
        page.locator("#cmp-lay-pattern").press("Enter")
        page.wait_for_function("() => location.search.includes('lpat=')")

        def shown() -> list[dict[str, Any]]:
            return (page.evaluate(GRID_ROWS, LAY_GRID) or {}).get("rows") or []

        def filtered() -> bool:
            rows = shown()
            return (any(r["id"].endswith("attention.output.LayerNorm") for r in rows)
                    and all("attention" in r["id"] or r["depth"] <= 2 for r in rows))

        # Wait for the filtered tree (the list's rows fail the second condition, the unfiltered
        # tree's the first): the matches and their ancestors, nothing else deep.
        wait_until(filtered, message=lambda: f"the tree filtered by name; rows: {[r['id'] for r in shown()][:20]}")
    finally:
        ctx.close()
    assert errors == [], errors


def test_quantized_model_layers_show_change(stores: dict[str, Any], browser: Browser) -> None:
    exp, ids, names = _experiment(stores["uri_a"], QUANT)
    quantized = next(r for r, n in names.items() if "quantize" in n)
    ctx, page, errors = _open(browser, _url(stores["a"], exp, ids, "ctab=layers&lview=list&lsort=any"))
    try:
        rows = _grid(page, LAY_GRID, 1, timeout_s=60)["rows"]
        index = ids.index(quantized)
        changes = [r["cells"][f"m{index}"].get("change") or 0 for r in rows]
        assert max(changes) > 0, changes
        assert rows[0]["cells"][f"m{index}"]["change"] == max(changes)  # sorted by change
    finally:
        ctx.close()
    assert errors == [], errors


def test_flag_written_in_one_session_is_seen_in_another(stores: dict[str, Any], browser: Browser) -> None:
    from mlflow_cc.studies import bias_study

    exp, ids, _ = _experiment(stores["uri_a"], bias_study.EXPERIMENT)
    url = _url(stores["a"], exp, ids, "rows=instances")
    ctx_a, page_a, errors_a = _open(browser, url)
    ctx_b, page_b, errors_b = _open(browser, url)
    try:
        rows = _grid(page_a, BEH_GRID, 5)["rows"]
        instance = rows[2]["key"]
        page_a.locator(f".cmp-beh .ag-row[row-id='{instance}'] .ag-cell[col-id='v1']").click()
        page_a.wait_for_function(
            "(i) => { const v = document.querySelector('#cmp-flag-target'); return v && v.innerText.includes(i); }",
            arg=instance)
        note = "<b>check</b> this instance"
        page_a.locator("#cmp-flag-note").fill(note)
        page_a.locator("#cmp-flag-add").click()
        page_a.wait_for_function("() => document.querySelector('#cmp-flag-msg').innerText.includes('saved')")
        page_a.wait_for_selector(f".cmp-beh .ag-row[row-id='{instance}'] .cmp-flag")  # ⚑ marker
        # The other session sees it without reloading (the list is re-read every few seconds).
        page_b.wait_for_function("(n) => document.querySelector('#cmp-flag-list').innerText.includes(n)",
                                 arg=note)
        assert page_b.locator("#cmp-flag-list b").count() == 0  # plain text, never HTML
        tags = MlflowClient(stores["uri_a"]).get_run(ids[1]).data.tags
        assert any(k.startswith(contract.TAG_FLAG_PREFIX) and instance in v for k, v in tags.items())
        # Flagged only: the instance rows shrink to the flagged one.
        page_b.locator("#cmp-beh-flagged input").check()
        page_b.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({BEH_GRID!r});"
                                 " return r && r.rows.length === 1; }")
        assert _grid(page_b, BEH_GRID)["rows"][0]["key"] == instance
        assert "flagged=on" in page_b.url
    finally:
        ctx_a.close()
        ctx_b.close()
    assert errors_a == [] and errors_b == [], errors_a + errors_b


@pytest.mark.parametrize("count", [2, 12])
def test_screenshots_both_tabs(stores: dict[str, Any], browser: Browser, count: int) -> None:
    logged = stores["synthetic"]
    ids = logged.run_ids[:count]
    exp = logged.experiment_id
    SHOTS.mkdir(exist_ok=True)
    ctx, page, errors = _open(browser, _url(stores["a"], exp, ids, "rows=classes&rel=rel"))
    try:
        _grid(page, BEH_GRID, 10)
        if count == 12:  # the model without outputs says so in its column
            expect(page.locator(".cmp-beh .ag-header")).to_contain_text("outputs not logged", timeout=TIMEOUT_S * 1000)
        page.locator(".cmp-beh .ag-row").first.wait_for()
        painted(page)
        page.screenshot(path=str(SHOTS / f"comparison-behaviours-{count}.png"), full_page=True)
        page.locator("#cmp-tab .tab:has-text('Layers'), #cmp-tab >> text=Layers").first.click()
        page.wait_for_function("() => location.search.includes('ctab=layers')")
        _grid(page, LAY_GRID, 2)
        page.locator("#cmp-lay-expand").click()
        _grid(page, LAY_GRID, 8)
        if count == 12:
            expect(page.locator(".cmp-lay .ag-header")).to_contain_text("weights not logged", timeout=TIMEOUT_S * 1000)
        page.locator("#cmp-lay-grid .ag-row").first.wait_for()
        painted(page)
        page.screenshot(path=str(SHOTS / f"comparison-layers-{count}.png"), full_page=True)
        # The state is in the URL: a reload shows the same tab and expanded modules.
        page.reload()
        _grid(page, LAY_GRID, 8)
        assert "open=" in page.url and "ctab=layers" in page.url
        # Collapse everything, then open one module with a click on its name.
        page.locator("#cmp-lay-collapse").click()
        page.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({LAY_GRID!r}); return r && r.rows.length === 2; }}")
        page.locator("#cmp-lay-grid .ag-center-cols-viewport .ag-row, #cmp-lay-grid .ag-pinned-left-cols-container"
                     " .ag-row").filter(has_text="encoder").first.locator(".cmp-tree").click()
        page.wait_for_function(f"() => {{ const r = ({GRID_ROWS})({LAY_GRID!r});"
                               " return r && r.rows.some(x => x.id === 'encoder.layer'); }")
        toggle = page.locator("#cmp-lay-grid .cmp-tree").filter(has_text="encoder").first
        expect(toggle).to_contain_text("▾", timeout=TIMEOUT_S * 1000)
    finally:
        ctx.close()
    assert errors == [], errors


def test_changing_the_base_recomputes(stores: dict[str, Any], browser: Browser) -> None:
    logged = stores["synthetic"]
    ids = logged.run_ids[:4]
    ctx, page, errors = _open(browser, _url(stores["a"], logged.experiment_id, ids, "rows=classes&rel=rel"))
    try:
        before = _grid(page, BEH_GRID, 10)["rows"]
        assert all(r["v0"] > 0.5 for r in before)  # the default base: the root, absolute correctness
        old_grid = page.evaluate("() => document.querySelector('.cmp-beh .cmp-grid').id")
        page.locator("#cmp-base").click()
        page.locator(".dash-dropdown-content [role=option]").filter(has_text="prune 25%").click()
        page.wait_for_function(f"() => location.search.includes('base={ids[3]}')")
        page.wait_for_function("(old) => { const el = document.querySelector('.cmp-beh .cmp-grid');"
                               " return el && el.id !== old; }", arg=old_grid)
        after = _grid(page, BEH_GRID, 10)["rows"]
        titles = page.evaluate("() => { const el = document.querySelector('.cmp-beh .cmp-grid');"
                               " return dash_ag_grid.getApi(JSON.parse(el.id)).getColumnDefs()"
                               ".map(c => (c.headerComponentParams || {}).title || ''); }")
        assert ids[3] in titles[2]  # the new base is the first model column
        # Relative to the most-pruned model, the root is better: positive deltas.
        assert sum(r["v1"] for r in after) > 0
    finally:
        ctx.close()
    assert errors == [], errors
