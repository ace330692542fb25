"""Compression Overview at 5,000 and 52 models: server-side figure time vs the store fetch, and the browser, cold and warm.

    python benchmarks/overview.py [--n 5000] [--small-n 52] [--repeats 3] [--store DIR] [--no-browser]

For each size (``--n``, then ``--small-n``; 0 skips the small one) it builds (or reuses,
with ``--store``) a sqlite experiment ``overview-benchmark-<size>`` of that many models, then:

Server side, in this process:

* ``n_models``: models in the experiment; ``floor_s`` (s): the reader's full fetch of the
  experiment (what any view must wait for once);
* ``overview_s`` (s): building the initial Model Map and Model Scatterplot (layout, tooltips,
  figures and their JSON) from the fetched forest; ``overview_ratio`` = overview_s / floor_s
  (target <= 0.5);
* ``selection_details_ms`` (ms): explaining a selection of ``selection_size`` models (300,
  or all of a smaller experiment) and drawing its bar charts, median of 3 (target <= 200).

Browser (headless Chromium through Playwright; the app served by ``mlflow-cc ui``, the
command users run, i.e. reader snapshots on, in a child process). Every page load is a
fresh browser context (no HTTP cache, no storage); the time runs from the page's
navigation start to the frame after the condition holds:

* ``browser_map_cold_ms`` (ms): the first visit to a server process just started with an
  empty cache folder (``MLFLOW_CC_CACHE_DIR``): the reader's full fetch, the layout and the
  figures are all computed for this visit. Ends when EVERY node marker of the map is drawn:
  the map's ``path.point`` elements in the DOM (traces "models" and "filtered out") number
  as many as the models the map shows. No target yet (reported next to warm).
* ``longest_task_cold_ms`` (ms): the longest main-thread task (PerformanceObserver
  "longtask") during that cold load.
* ``browser_map_warm_ms`` (ms): the same end point on later visits to that same server
  (its reader and caches warm), median of ``--repeats``. Target <= 2000.
* ``longest_task_ms`` (ms): the longest main-thread task over those warm loads (target <= 500).
* ``browser_map_ms`` (ms): the warm loads timed to the earlier end point (the map's first
  SVG drawn with its traces, which need not hold every marker yet), median; kept for
  comparison with figures before 2026-11 (target <= 2000).
* ``map_nodes``: node markers counted in the DOM at the end point (a mismatch with the
  figure the server builds for the default view is reported on stderr).
* ``cold_server_start_s`` (s): starting that server process until its port accepts
  connections (interpreter and imports; not part of any browser figure).
* ``browser_console_errors``: console errors and page errors over all loads (expect 0).

Top-level keys are for ``--n``; ``small`` holds the same keys for ``--small-n``.
``targets`` lists the targets above. The JSON object is the last line printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo's testing/ package
sys.path.insert(0, str(ROOT / "tests"))

EXPERIMENT = "overview-benchmark"
#: The map's traces whose markers are models (model_map.py names them so).
NODE_TRACES = ("models", "filtered out")

# Installed before any page script: records the longest main-thread task, and checks every
# animation frame for the two end points; each is stamped one frame later (after the paint).
PAGE_INIT = """
window.__longest = 0;
new PerformanceObserver(list => { for (const e of list.getEntries()) {
  window.__longest = Math.max(window.__longest, e.duration); } })
  .observe({type: 'longtask', buffered: true});
window.__mapFirst = null; window.__mapAll = null; window.__mapNodes = 0;
(function tick() {
  const gd = document.querySelector('#ov-map .js-plotly-plot');
  if (gd && gd._fullData) {
    if (window.__mapFirst === null && gd._fullData.length > 3 && gd.querySelector('.main-svg')) {
      window.__mapFirst = -1;
      requestAnimationFrame(() => { window.__mapFirst = performance.now(); });
    }
    const names = ['models', 'filtered out'];  // NODE_TRACES
    const want = (gd.data || []).filter(t => names.includes(t.name))
      .reduce((n, t) => n + ((t.customdata && t.customdata.length) || 0), 0);
    let drawn = 0;
    for (const g of gd.querySelectorAll('.scatterlayer g.trace')) {
      const tr = g.__data__ && g.__data__[0] && g.__data__[0].trace;
      if (tr && names.includes(tr.name)) drawn += g.querySelectorAll('path.point').length;
    }
    if (want > 0 && drawn === want && window.__mapFirst !== null) {
      window.__mapNodes = drawn;
      requestAnimationFrame(() => { window.__mapAll = performance.now(); });
      return;
    }
  }
  requestAnimationFrame(tick);
})();
"""
MAP_DONE = "() => window.__mapAll !== null && window.__mapFirst > 0"


def build_store(store: Path, n: int, experiment: str) -> str:
    from mlflow_cc.track.tracking import set_metric_info
    from testing.synthetic import build_random_forest

    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None and len(client.search_runs([exp.experiment_id], max_results=n)) >= n:
        return uri
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment=experiment,
                    tracking_uri=uri)
    t = time.perf_counter()
    build_random_forest(client, exp_id, n)
    print(f"built {n} models in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return uri


def server_side(uri: str, experiment: str) -> dict[str, Any]:
    import plotly.io as pio

    from dash_app.figures.details import details_figure
    from dash_app.figures.encoding import default_metrics
    from dash_app.figures.hover import hover_texts
    from dash_app.figures.overview import overview_figures
    from dash_app.state import empty_state
    from mlflow_cc.analysis.selection import explain_selection
    from mlflow_cc.metric_info import info_for
    from mlflow_cc.read.reader import ExperimentReader

    reader = ExperimentReader(experiment, uri)
    t = time.perf_counter()
    forest = reader.forest()
    floor = time.perf_counter() - t
    infos = reader.metric_info

    t = time.perf_counter()
    state = {**empty_state(), "ready": True, **default_metrics(forest, infos)}
    mfig, sfig, _ = overview_figures(forest, infos, state, hover_texts(forest, infos))
    pio.to_json(mfig, validate=False)
    pio.to_json(sfig, validate=False)
    overview = time.perf_counter() - t
    nodes = sum(len(tr.customdata or ()) for tr in mfig.data if tr.name in NODE_TRACES)

    root = max(forest.roots, key=lambda r: len(forest.nodes[r].children))
    selected = [root, *forest.descendants(root)][:300]
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        ex = explain_selection(forest, selected)
        for m in [n for n in forest.metric_names() if info_for(infos, n).primary] or ["accuracy"]:
            pio.to_json(details_figure(forest, selected, ex.values, ex.x, ex.color, m, info_for(infos, m)),
                        validate=False)
        runs.append(time.perf_counter() - t)
    return {"n_models": len(forest), "floor_s": round(floor, 3), "overview_s": round(overview, 3),
            "overview_ratio": round(overview / floor, 3),
            "selection_details_ms": round(statistics.median(runs) * 1000, 1),
            "selection_size": len(selected), "_expected_nodes": nodes}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(uri: str, experiment: str, cache: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """``mlflow-cc ui`` in a new process with an empty cache folder: (process, url, seconds to listen)."""
    port = free_port()
    env = {**os.environ, "MLFLOW_CC_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow_cc.cli", "ui", "--tracking-uri", uri,
                             "--experiment", experiment, "--port", str(port)],
                            env=env, cwd=cache, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow-cc ui exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError("mlflow-cc ui did not listen within 180 s") from None
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", time.perf_counter() - t


def load_once(b: Any, url: str) -> dict[str, float]:
    """One page load in a fresh browser context: end points (ms after navigation start) and the longest task."""
    ctx = b.browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = ctx.new_page()
        page.on("console", lambda m: b.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: b.errors.append(str(e)))
        page.add_init_script(PAGE_INIT)
        page.goto(url)
        page.wait_for_function(MAP_DONE, timeout=180_000, polling=100)
        return page.evaluate("() => ({first: window.__mapFirst, all: window.__mapAll, "
                             "nodes: window.__mapNodes, longest: window.__longest})")
    finally:
        ctx.close()


def browser_side(uri: str, experiment: str, repeats: int) -> dict[str, Any]:
    from browser import launch

    b = launch()
    cache = Path(tempfile.mkdtemp(prefix="cc-overview-cache-"))
    proc, url, started = start_app(uri, experiment, cache)
    try:
        cold = load_once(b, url)
        warm = [load_once(b, url) for _ in range(repeats)]
        errors = list(b.errors)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        b.close()
        shutil.rmtree(cache, ignore_errors=True)
    return {"browser_map_cold_ms": round(cold["all"]), "longest_task_cold_ms": round(cold["longest"]),
            "browser_map_warm_ms": round(statistics.median(w["all"] for w in warm)),
            "longest_task_ms": round(max(w["longest"] for w in warm)),
            "browser_map_ms": round(statistics.median(w["first"] for w in warm)),
            "map_nodes": cold["nodes"], "cold_server_start_s": round(started, 2),
            "browser_console_errors": len(errors)}


def measure(store: Path, n: int, repeats: int, browser: bool) -> dict[str, Any]:
    experiment = f"{EXPERIMENT}-{n}"
    uri = build_store(store, n, experiment)
    out = server_side(uri, experiment)
    expected = out.pop("_expected_nodes")
    if browser:
        out.update(browser_side(uri, experiment, repeats))
        if out["map_nodes"] != expected:
            print(f"map shows {out['map_nodes']} node markers, the default view's figure has {expected}",
                  file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--small-n", type=int, default=52, help="A small experiment timed too (0: skip).")
    ap.add_argument("--repeats", type=int, default=3, help="Warm page loads (median).")
    ap.add_argument("--store", type=Path, default=None, help="Reuse a store folder across runs.")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="cc-overview-"))
    store.mkdir(parents=True, exist_ok=True)
    out = measure(store, args.n, args.repeats, not args.no_browser)
    if args.small_n:
        out["small"] = measure(store, args.small_n, args.repeats, not args.no_browser)
    out["targets"] = {"overview_ratio": 0.5, "selection_details_ms": 200, "browser_map_warm_ms": 2000,
                      "browser_map_ms": 2000, "longest_task_ms": 500}
    print(json.dumps(out))

if __name__ == "__main__":
    main()
