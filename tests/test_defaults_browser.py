"""The app's defaults read well on the digits demo study (issue 10, points 5 and 6), in Chromium.

The scatterplot's default x must vary across the models (pruning leaves the dense size alone, so
``size_bytes`` put every unquantized model in one column); the Pareto front is drawn over the
markers with its models labelled; the map has a size legend and node labels; the Layers Δ is
explained; 8x8 previews are drawn pixelated. Every wait is on a condition, never a fixed sleep.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, serve, watched_page
from torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

from dash_app.app import create_app
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.studies.demo import build_demo

EXPERIMENT = "digits-compression"
LONG = 120_000  # ms: two shared cores, five other engineers' tests

GRAPH = """(id) => { const g = document.querySelector('#' + id + ' .js-plotly-plot');
  return g && g.data ? g : null; }"""
SCATTER_READY = """() => { const g = document.querySelector('#ov-scatter .js-plotly-plot');
  return !!(g && g.data && g.data.some(t => t.name === 'models')
            && document.querySelector('#ov-scatter .scatterlayer .trace')); }"""
MAP_READY = """() => { const g = document.querySelector('#ov-map .js-plotly-plot');
  return !!(g && g.data && g.data.some(t => t.name === 'models')
            && document.querySelector('#ov-map .scatterlayer .trace')); }"""
#: From ``_fullData``: there typed arrays sent as base64 (numpy) are decoded.
TRACES = """(id) => { const g = document.querySelector('#' + id + ' .js-plotly-plot');
  return g._fullData.map(t => ({name: t.name, mode: t.mode, visible: t.visible,
    x: t.x ? Array.from(t.x) : [], customdata: t.customdata ? Array.from(t.customdata) : [],
    text: t.text ? Array.from(t.text) : null, legendgroup: t.legendgroup || null,
    grouptitle: (t.legendgrouptitle && t.legendgrouptitle.text) || null})); }"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The digits demo study (26 models) in a fresh sqlite store, served by the app."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('defaults') / 'mlflow.db'}"
    statuses = dict(build_demo(uri, only=["digits_study"]))
    assert statuses["digits_study"].startswith("built"), statuses
    reader = ExperimentReader(EXPERIMENT, uri)
    forest = reader.forest()
    served = serve(create_app(reader, refresh_ms=3000))
    yield {"served": served, "forest": forest, "experiment_id": reader.experiment_id}
    served.stop()


@pytest.fixture
def page(browser: Browser, study: dict[str, Any]) -> Iterator[Any]:
    """A fresh page; the test fails if the console reported an error."""
    pg, ctx, errors = watched_page(browser, None, LONG / 1000, viewport={"width": 1600, "height": 1100})
    yield pg
    ctx.close()
    assert errors == [], errors


def open_overview(page: Any, study: dict[str, Any], sel: list[str] | None = None) -> None:
    query = f"?experiment={study['experiment_id']}" + (f"&sel={','.join(sel)}" if sel else "")
    page.goto(study["served"].url + "/" + query)
    page.wait_for_function(MAP_READY, timeout=LONG)
    page.wait_for_function(SCATTER_READY, timeout=LONG)


def traces(page: Any, graph: str) -> list[dict[str, Any]]:
    return page.evaluate(TRACES, graph)


def unquantized(forest: Any) -> set[str]:
    """Models with no quantize step in their lineage: their dense size is the base's."""
    out = set()
    for rid in forest.nodes:
        chain, node = [], forest.nodes[rid]
        while node is not None:
            chain.append(node.operation)
            node = forest.nodes.get(node.parent_id) if node.parent_id else None
        if "quantize" not in chain:
            out.add(rid)
    return out


def test_default_scatter_x_varies_across_unquantized_models(page: Any, study: dict[str, Any]) -> None:
    open_overview(page, study)
    models = next(t for t in traces(page, "ov-scatter") if t["name"] == "models")
    x_of = dict(zip(models["customdata"], models["x"]))
    plain = unquantized(study["forest"]) & set(x_of)
    assert len(plain) >= 15
    # pruning at 50-95 % must spread the unquantized models along x, not stack them in one column
    # (models pruned to the same sparsity share a value: at least base, 50, 70, 90, 95 %)
    assert len({x_of[r] for r in plain}) >= 5, sorted({x_of[r] for r in plain})
    assert len(set(x_of.values())) > 1


def test_pareto_front_is_drawn_over_the_markers_with_labels(page: Any, study: dict[str, Any]) -> None:
    open_overview(page, study)
    ts = traces(page, "ov-scatter")
    names = [t["name"] for t in ts]
    assert "Pareto front" in names, names
    front = ts[names.index("Pareto front")]
    assert names.index("Pareto front") > names.index("models")  # drawn after (above) the markers
    assert "lines" in front["mode"] and front["visible"] is not False
    assert len(front["x"]) >= 2
    labels = front["text"] or []
    assert len(labels) == len(front["x"]) and all(labels), labels
    # its key is HTML in the card's head (Plotly draws no legend)
    assert page.evaluate("() => document.querySelector('#ov-scatter-key').innerText") == "Pareto front"
    assert page.evaluate("() => !document.querySelector('#ov-scatter .legend')")
    # plain text: every label is (the start of) a model name
    model_names = {n.name for n in study["forest"].nodes.values()}
    assert all(any(n.startswith(lbl.rstrip("…")) for n in model_names) for lbl in labels), labels
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#ov-scatter .scatterlayer .trace:last-child .textpoint text')).map(e => e.textContent)""")
    assert len([d for d in drawn if d]) >= 2, drawn
    # log axis: only major ticks carry labels (no '2 3 4 5 6 7 8 9' between the powers of ten)
    ticks = page.evaluate("""() => Array.from(document.querySelectorAll('#ov-scatter .xtick text'))
        .map(e => e.textContent)""")
    assert ticks and not any(t.strip() in list("23456789") for t in ticks), ticks


#: The map's key above the figure: its text, and the diameters of its node-size marks.
MAP_KEY = """() => { const k = document.querySelector('#ov-map-key');
  return {text: k.innerText, dots: Array.from(k.querySelectorAll('.cc-key-dot')).map(d => d.offsetWidth),
          ramp: !!k.querySelector('.cc-key-ramp')}; }"""


def test_map_has_a_size_legend_and_node_labels(page: Any, study: dict[str, Any]) -> None:
    open_overview(page, study)
    # the key is HTML above the map (Plotly draws neither a legend nor a colour bar there)
    key = page.evaluate(MAP_KEY)
    assert "colour: accuracy" in key["text"] and "darker is better" in key["text"] and key["ramp"], key
    assert "node size: " in key["text"] and "KB" in key["text"], key
    assert len(key["dots"]) == 2 and key["dots"][0] < key["dots"][1], key  # true to the nodes' sizes
    assert page.evaluate("() => !document.querySelector('#ov-map .legend, #ov-map .colorbar')")
    # the camera button's image has them back: the colour bar and the size legend
    page.hover("#ov-map .js-plotly-plot")
    with page.expect_download(timeout=LONG) as download:
        page.click('#ov-map .modebar-btn[data-title^="Download plot"]')
    assert download.value.suggested_filename == "model-map.svg"
    svg = Path(download.value.path()).read_text(encoding="utf-8")
    assert re.search(r'class="[^"]*\bcolorbar\b', svg) and ">accuracy</text>" in svg, svg[-3000:]
    assert "node size: " in svg and "smallest " in svg and "largest " in svg, svg[-3000:]
    labels = page.evaluate("""() => { const g = document.querySelector('#ov-map .js-plotly-plot');
        return g.data.filter(t => t.name === 'node labels').flatMap(t => t.text); }""")
    assert len(labels) == len(study["forest"])  # 26 models: room for every name
    shown = page.evaluate("""() => Array.from(document.querySelectorAll('#ov-map .scatterlayer .textpoint text'))
        .map(e => e.textContent)""")
    assert any(s.startswith("digits-cnn") for s in shown), shown


def test_details_table_fits_its_panel(page: Any, study: dict[str, Any]) -> None:
    forest = study["forest"]
    root = next(r for r, n in forest.nodes.items() if not n.parent_id)
    kids = [r for r, n in forest.nodes.items() if n.parent_id == root and n.operation == "prune"]
    open_overview(page, study, [root, *kids])
    page.wait_for_selector("#ov-details .cc-table tbody tr", timeout=LONG)
    fits = page.evaluate("""() => { const w = document.querySelector('#ov-details .cc-table-wrap');
        const card = w.closest('.cc-card').getBoundingClientRect();
        const t = w.querySelector('table').getBoundingClientRect();
        return [w.scrollWidth <= w.clientWidth + 1, t.right <= card.right + 1]; }""")
    assert fits == [True, True]
    # selection labels are words, not key=value jargon
    legend = page.evaluate("""() => Array.from(document.querySelectorAll('#ov-details .legendtext'))
        .map(e => e.textContent)""")
    assert legend and not any("=" in t or "_" in t for t in legend), legend


def test_layers_delta_is_explained_and_previews_are_pixelated(page: Any, study: dict[str, Any]) -> None:
    forest = study["forest"]
    root = next(r for r, n in forest.nodes.items() if not n.parent_id)
    kids = [r for r, n in forest.nodes.items() if n.parent_id == root and n.operation == "prune"][:3]
    open_overview(page, study, [root, *kids])
    page.get_by_text("Performance Comparison", exact=True).click()
    page.get_by_text("Layers", exact=True).click()
    page.wait_for_selector("#cmp-lay-grid .ag-row", timeout=LONG)
    page.wait_for_function("() => document.querySelector('#cmp-lay-legend').textContent.includes('Δ')",
                           timeout=LONG)
    legend = page.evaluate("() => document.querySelector('#cmp-lay-legend').textContent")
    assert "Δ = change vs the base" in legend and "no unit" in legend, legend
    tips = page.evaluate("""() => dash_ag_grid.getApi('cmp-lay-grid').getColumnDefs()
        .map(c => c.headerTooltip || '')""")
    assert any("Δ" in t for t in tips), tips
    # the filter's placeholder is not cut off
    fits = page.evaluate("""() => { const i = document.querySelector('#cmp-lay-pattern');
        const s = getComputedStyle(i), c = document.createElement('canvas').getContext('2d');
        c.font = s.fontSize + ' ' + s.fontFamily;
        const room = i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
        return c.measureText(i.placeholder).width <= room; }""")
    assert fits
    page.get_by_text("Behaviours", exact=True).click()
    page.locator("#cmp-beh-rows").get_by_text("instances", exact=True).click()
    page.wait_for_selector("img.cmp-thumb", timeout=LONG)
    rendering = page.evaluate("() => getComputedStyle(document.querySelector('img.cmp-thumb')).imageRendering")
    assert rendering == "pixelated"
