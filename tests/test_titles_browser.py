"""Comparison titles in a real browser (Playwright + Debian Chromium) on the digits demo study.

The paper's first task: pruned models (magnitude and gradient, 90 and 95 %) and their fine-tuned
children. Every place a compared model is named — the Behaviours and Layers column titles, the
prediction-changes panel, the base, flag and layer-sort dropdowns — must tell the models apart,
show its whole title, and the dropdown menus must read like the chosen value (no upper case).
The root is not selected: the base is their closest common ancestor, and the page says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, serve
from torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

from dash_app.app import create_app
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.studies import digits_study

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
TIMEOUT_MS = 180_000
#: Header titles as drawn: (text without the base tag and link, scrollWidth, clientWidth).
HEADERS = """(sel) => [...document.querySelectorAll(sel + ' .cmp-h-name')].map(e => [
  [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join(''), e.scrollWidth, e.clientWidth])"""
#: The column titles the grid holds (all columns, drawn or not).
COLUMN_TITLES = """(sel) => { const el = document.querySelector(sel); if (!el || !window.dash_ag_grid) return null;
  let api = null; try { api = dash_ag_grid.getApi(JSON.parse(el.id)); } catch (e) { api = dash_ag_grid.getApi(el.id); }
  if (!api) return null; return api.getColumnDefs().filter(c => /^[vm][0-9]+$/.test(c.colId)).map(c => c.headerName); }"""
ROWS_LOADED = """(sel) => { const el = document.querySelector(sel); if (!el || !window.dash_ag_grid) return false;
  let api = null; try { api = dash_ag_grid.getApi(JSON.parse(el.id)); } catch (e) { api = dash_ag_grid.getApi(el.id); }
  if (!api) return false; let n = 0; api.forEachNode(r => { if (r.data) n++; }); return n >= 2; }"""
BEH, LAY = ".cmp-beh", ".cmp-lay"
#: An open dropdown's menu (Dash 4 draws it beside the dropdown's button).
MENU = ".dash-dropdown-content"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('titles') / 'digits.db'}"
    digits_study.build(uri)
    reader = ExperimentReader(digits_study.EXPERIMENT, uri)
    forest = reader.forest()
    pruned = [n for n in forest.walk() if n.operation == "prune" and n.op_params.get("sparsity") in (0.9, 0.95)
              and n.op_params.get("method") in ("global_magnitude", "gradient")]
    tuned = [c for p in pruned for c in p.children if forest[c].operation == "finetune"]
    assert len(pruned) == 4 and len(tuned) == 4
    app = serve(create_app(reader, refresh_ms=2000))
    yield {"app": app, "experiment": reader.experiment_id, "selection": [p.run_id for p in pruned] + tuned,
           "root": forest.roots[0]}
    app.stop()


def _settled_titles(page: Any, where: str) -> list[list[Any]]:
    """The header titles once the grid has rows and draws every model column it defines."""
    grid = f"{where} .cmp-grid"
    page.wait_for_function(ROWS_LOADED, arg=grid, timeout=TIMEOUT_MS)
    page.wait_for_function(f"(a) => {{ const t = ({COLUMN_TITLES})(a[1]); "
                           f"return t && t.length > 1 && ({HEADERS})(a[0]).length === t.length; }}",
                           arg=[where, grid], timeout=TIMEOUT_MS)
    return page.evaluate(HEADERS, where)


def _options(page: Any, dropdown: str) -> list[tuple[str, str]]:
    """Open a dropdown; its options' texts as shown and their text-transform; closed again."""
    page.locator(dropdown).click()
    page.wait_for_selector(f"{MENU} [role=option]", timeout=TIMEOUT_MS)
    out = page.evaluate(f"() => [...document.querySelectorAll('{MENU} [role=option]')].map(e => "
                        "[e.innerText.trim(), getComputedStyle(e).textTransform])")
    page.keyboard.press("Escape")
    page.wait_for_selector(MENU, state="detached", timeout=TIMEOUT_MS)
    return out


def _assert_readable(titles: list[list[Any]], what: str) -> list[str]:
    texts = [t[0].strip() for t in titles]
    assert len(set(texts)) == len(texts), f"{what}: titles repeat: {texts}"
    cut = [t for t in titles if t[1] > t[2]]
    assert not cut, f"{what}: titles cut off (scrollWidth > clientWidth): {cut}"
    return texts


def test_pruned_and_finetuned_models_have_distinct_whole_titles(study: dict[str, Any], browser: Browser) -> None:
    n_models = len(study["selection"]) + 1  # the common ancestor (the root, not selected) is the base
    context = browser.browser.new_context(viewport={"width": 2400, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{study['app'].url}/?experiment={study['experiment']}&sel={','.join(study['selection'])}"
                  "&tab=comparison&rows=classes")
        beh = _assert_readable(_settled_titles(page, BEH), "Behaviours")
        assert page.evaluate(COLUMN_TITLES, f"{BEH} .cmp-grid") == beh
        assert len(beh) == n_models, beh
        assert all("(" not in t and len(t) <= 26 for t in beh), beh
        assert sum("finetune" in t for t in beh) == 4, beh
        # The base and why, next to the base dropdown.
        page.wait_for_function("() => (document.querySelector('#cmp-base-why') || {}).innerText", timeout=TIMEOUT_MS)
        why = page.locator("#cmp-base-why").inner_text()
        assert "closest common ancestor" in why and beh[0] in why, why
        # The prediction-changes panel: one block per compared model, titled alike.
        page.wait_for_function(f"() => document.querySelectorAll('.cmp-change-model').length === {n_models - 1}",
                               timeout=TIMEOUT_MS)
        changes = page.evaluate("() => [...document.querySelectorAll('.cmp-change-model')].map(e => "
                                "[e.innerText, e.scrollWidth, e.clientWidth])")
        assert _assert_readable(changes, "prediction changes") == beh[1:]
        # Dropdowns: distinct options, in the case of the chosen value.
        base_options = _options(page, "#cmp-base")
        assert [t for t, _ in base_options] == beh
        assert {tt for _, tt in base_options} == {"none"}, base_options
        flag_options = [t for t, _ in _options(page, "#cmp-flag-target")]
        assert flag_options == [f"model: {t}" for t in beh]
        page.screenshot(path=str(SHOTS / "names-behaviours.png"), full_page=True)
        # Layers: the same titles, whole.
        page.locator("#cmp-tab >> text=Layers").first.click()
        page.wait_for_function("() => location.search.includes('ctab=layers')", timeout=TIMEOUT_MS)
        lay = _assert_readable(_settled_titles(page, LAY), "Layers")
        assert lay == beh
        sort_options = [t for t, _ in _options(page, "#cmp-lay-sort")]
        assert sort_options[2:] == [f"most changed in {t}" for t in beh[1:]]
        assert len(set(sort_options)) == len(sort_options)
        page.screenshot(path=str(SHOTS / "names-layers.png"), full_page=True)
    finally:
        context.close()
    assert errors == [], errors


@pytest.fixture(autouse=True)
def _shots_dir() -> None:
    SHOTS.mkdir(exist_ok=True)
