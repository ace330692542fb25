"""Selecting at a person's pace in a real browser, on the digits demo study (issue 10, points 1, 2, 6).

A person drags a box and looks at it for a few seconds; shift-clicks eight models about half a
second apart, resting the pointer on each node before pressing; leaves the pointer where it
clicked. The app must keep every one of those selections and must not leave a hover label
covering the neighbours. Checks read what the screen shows (the selection rings' SVG markers,
Selection Details) once the app has settled: no Dash request in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, serve, watched_page
from waiting import INFLIGHT

from dash_app.app import create_app
from dash_app.state import parse_query
from mlflow_cc.read.reader import ExperimentReader

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
EXPERIMENT = "digits-compression"

MAP_READY = """() => { const g = document.querySelector('#ov-map .js-plotly-plot');
  const s = document.querySelector('#ov-scatter .js-plotly-plot');
  return !!(g && g.data && g.data.some(t => t.name === 'models')
            && s && s.data && s.data.some(t => t.name === 'models')); }"""
#: Screen position of every model marker drawn in a graph: {run id: [x, y]}.
POSITIONS = """(graph) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  const out = {};
  const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
  for (const t of g._fullData) {
    if (t.name !== 'models' && t.name !== 'filtered out') continue;
    const ids = Array.from(t.customdata);
    ids.forEach((rid, i) => { out[rid] = [r.left + xa._offset + xa.l2p(xa.d2l(t.x[i])),
                                          r.top + ya._offset + ya.l2p(ya.d2l(t.y[i]))]; });
  }
  return out;
}"""
#: The selection rings as drawn: centre and stroke of each SVG marker of the "selected" trace.
RINGS = """(graph) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  if (!g || !g._fullData) return null;
  const t = g._fullData.find(d => d.name === 'selected');
  if (!t) return [];
  const layer = g.querySelector('.scatterlayer .trace' + t.uid);
  if (!layer) return [];
  return Array.from(layer.querySelectorAll('path.point')).map(p => {
    const b = p.getBoundingClientRect();
    return [b.left + b.width / 2, b.top + b.height / 2, getComputedStyle(p).stroke, b.width];
  });
}"""
HOVER_LABELS = "(graph) => document.querySelectorAll('#' + graph + ' .hoverlayer .hovertext').length"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The digits demo study (26 models) in a fresh sqlite store, served by the app."""
    from mlflow_cc.studies.demo import build_demo

    uri = f"sqlite:///{tmp_path_factory.mktemp('pace') / 'mlflow.db'}"
    status = dict(build_demo(uri, only=["digits_study"]))
    assert status["digits_study"].startswith("built"), status
    reader = ExperimentReader(EXPERIMENT, uri)
    served = serve(create_app(reader))
    yield {"uri": uri, "served": served, "reader": reader}
    served.stop()


@pytest.fixture
def page(browser: Browser, study: dict[str, Any]) -> Iterator[Any]:
    """A fresh page on the app; the test fails if the console reported an error."""
    pg, ctx, errors = watched_page(browser, INFLIGHT, 60, viewport={"width": 1600, "height": 1000})
    pg.goto(study["served"].url + "/")
    pg.wait_for_function(MAP_READY, timeout=60_000)
    pg.wait_for_function("() => document.querySelector('#ov-status').innerText.includes('26 models')",
                         timeout=30_000)
    settle(pg)
    yield pg
    ctx.close()
    assert errors == [], errors


def settle(page: Any, quiet_s: float = 0.6, timeout: float = 30.0) -> None:
    """Wait until no Dash request has been in flight for ``quiet_s`` and the page has painted."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if page.evaluate("() => window.__inflight || 0"):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            if not page.evaluate("() => window.__inflight || 0"):
                return
            quiet_since = None
        time.sleep(0.05)
    raise AssertionError(f"the app did not settle within {timeout} s")


def wait_for(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """Poll ``probe`` until ``ok`` holds for its value; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout} s")
        time.sleep(0.1)
        value = probe()
    return value


def positions(page: Any, graph: str) -> dict[str, tuple[float, float]]:
    return {r: (xy[0], xy[1]) for r, xy in page.evaluate(POSITIONS, graph).items()}


def rings(page: Any, graph: str) -> dict[str, Any]:
    """The selection rings on screen compared with the markers of the models ``want``-ed.

    Returns the ring centres (sorted); :func:`rings_on` matches them to model markers (several
    models can share a position in the scatterplot, so rings are compared as positions).
    """
    return {"centres": sorted((round(x, 1), round(y, 1)) for x, y, _s, _w in page.evaluate(RINGS, graph) or [])}


def rings_on(page: Any, graph: str, want: set[str]) -> bool:
    """Whether the rings drawn in ``graph`` sit exactly on the markers of ``want`` (those drawn)."""
    pos = positions(page, graph)
    expected = sorted(pos[r] for r in want if r in pos)
    got = rings(page, graph)["centres"]
    return len(got) == len(expected) and all(abs(a[0] - b[0]) < 2.5 and abs(a[1] - b[1]) < 2.5
                                             for a, b in zip(got, expected, strict=True))


def ring_ids(page: Any, graph: str) -> set[str]:
    """The models with a ring on them (for messages; models sharing a position all count)."""
    pos = positions(page, graph)
    return {r for x, y in rings(page, graph)["centres"] for r, (px, py) in pos.items()
            if abs(px - x) < 2.5 and abs(py - y) < 2.5}


def details_ids(page: Any) -> tuple[str, set[str]]:
    """Selection Details: its heading and the run ids of the models it lists."""
    heading = page.evaluate("() => { const h = document.querySelector('#ov-details h4');"
                            " return h ? h.innerText : ''; }")
    links = page.eval_on_selector_all("#ov-details a", "els => els.map(e => e.href)")
    return heading, {h.rsplit("/runs/", 1)[1] for h in links if "/runs/" in h}


def url_sel(page: Any) -> set[str]:
    return set(parse_query(page.evaluate("() => location.search")).get("sel") or [])


def assert_selected(page: Any, want: set[str], graphs: tuple[str, ...] = ("ov-map", "ov-scatter")) -> None:
    """After the app has settled: rings on exactly ``want`` in each graph, Details and URL agree."""
    settle(page)
    n = len(want)
    label = f"{n} model{'s' if n != 1 else ''} selected"
    for graph in graphs:
        wait_for(f"rings in {graph} on {sorted(want)}", lambda g=graph: (rings_on(page, g, want), ring_ids(page, g)),
                 lambda v: v[0])
    wait_for("Selection Details", lambda: details_ids(page), lambda v: v == (label, want))
    wait_for("the URL's selection", lambda: url_sel(page), lambda v: v == want)


def hold(page: Any, seconds: float, want: set[str]) -> None:
    """A person looks at the selection for ``seconds``: it must stay on screen all along."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for graph in ("ov-map", "ov-scatter"):
            assert rings_on(page, graph, want), f"selection changed in {graph}: {ring_ids(page, graph)}"
        time.sleep(0.2)


def drag_box(page: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    """Drag a box at a hand's speed (about 0.4 s from press to release)."""
    page.mouse.move(x0 - 20, y0 - 10)
    page.mouse.move(x0, y0, steps=3)
    time.sleep(0.15)
    page.mouse.down()
    for i in range(1, 13):
        page.mouse.move(x0 + (x1 - x0) * i / 12, y0 + (y1 - y0) * i / 12)
        time.sleep(0.03)
    time.sleep(0.1)
    page.mouse.up()


def inside(pos: dict[str, tuple[float, float]], box: tuple[float, float, float, float]) -> set[str]:
    x0, y0, x1, y1 = box
    return {r for r, (x, y) in pos.items() if x0 < x < x1 and y0 < y < y1}


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_box_select_in_the_map_holds(page: Any) -> None:
    pos = positions(page, "ov-map")
    # the first five models of the most crowded column, top to bottom
    by_col: dict[float, list[str]] = {}
    for r, (x, _y) in pos.items():
        by_col.setdefault(round(x), []).append(r)
    col = max(by_col.values(), key=len)
    five = sorted(col, key=lambda r: pos[r][1])[:5]
    xs, ys = [pos[r][0] for r in five], [pos[r][1] for r in five]
    box = (min(xs) - 14, min(ys) - 9, max(xs) + 14, max(ys) + 9)
    want = inside(pos, box)
    assert want == set(five)
    drag_box(page, *box)
    wait_for("rings after the box", lambda: rings_on(page, "ov-map", want), bool, timeout=15)
    hold(page, 5.0, want)
    assert_selected(page, want)
    shot(page, "pace-map-box.png")


def test_box_select_in_the_scatterplot_holds(page: Any) -> None:
    pos = positions(page, "ov-scatter")
    # the models left of the middle of the x axis (the smallest ones: the quantized models)
    xs = sorted(x for x, _ in pos.values())
    mid = (xs[0] + xs[-1]) / 2
    left = {r for r, (x, _) in pos.items() if x < mid}
    assert 2 <= len(left) < len(pos)
    lx, ly = [pos[r][0] for r in left], [pos[r][1] for r in left]
    box = (min(lx) - 15, min(ly) - 15, max(lx) + 15, max(ly) + 15)
    want = inside(pos, box)
    assert want == left
    drag_box(page, *box)
    wait_for("rings after the box", lambda: rings_on(page, "ov-scatter", want), bool, timeout=15)
    hold(page, 5.0, want)
    assert_selected(page, want)
    shot(page, "pace-scatter-box.png")


def test_eight_shift_clicks_half_a_second_apart_all_stick(page: Any) -> None:
    pos = positions(page, "ov-map")
    # eight models spread over the map, visited top to bottom as a person would
    order = sorted(pos, key=lambda r: (pos[r][1], pos[r][0]))
    eight = order[1::3][:8]
    assert len(eight) == 8
    t_last = 0.0
    here = (pos[eight[0]][0] - 40, pos[eight[0]][1] - 30)
    page.mouse.move(*here)
    for rid in eight:
        x, y = pos[rid]
        # move onto the node in a few steps, then rest ~0.1 s (Plotly re-hovers every 50 ms)
        page.mouse.move(x + 6, y + 4, steps=4)
        page.mouse.move(x, y, steps=2)
        time.sleep(0.1)
        wait = t_last + 0.5 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        page.keyboard.down("Shift")
        page.mouse.down()
        time.sleep(0.06)
        page.mouse.up()
        page.keyboard.up("Shift")
        t_last = time.monotonic()
    assert_selected(page, set(eight))
    shot(page, "pace-shift-clicks.png")


def test_no_hover_label_stays_after_a_click(page: Any) -> None:
    pos = positions(page, "ov-map")
    rid = sorted(pos, key=lambda r: (pos[r][1], pos[r][0]))[2]
    x, y = pos[rid]
    page.mouse.move(x + 8, y + 5)
    page.mouse.move(x, y, steps=3)
    wait_for("a hover label on the node", lambda: page.evaluate(HOVER_LABELS, "ov-map"), lambda n: n > 0)
    time.sleep(0.15)  # the hand rests on the node before pressing (Plotly re-hovers every 50 ms)
    page.mouse.down()
    time.sleep(0.06)
    page.mouse.up()
    # the pointer rests where it clicked: the label must go and stay gone
    wait_for("hover labels after the click", lambda: page.evaluate(HOVER_LABELS, "ov-map"), lambda n: n == 0,
             timeout=10)
    assert_selected(page, {rid})
    assert page.evaluate(HOVER_LABELS, "ov-map") == 0
