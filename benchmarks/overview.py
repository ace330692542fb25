"""Compression Overview at 5,000 models: server-side figure time vs the store fetch, and the browser.

    python benchmarks/overview.py [--n 5000] [--store DIR]

Builds (or reuses, with ``--store``) a sqlite experiment of ``n`` models, then prints one
JSON line last:

* ``floor_s``: the reader's full fetch of the experiment (what any view must wait for once);
* ``overview_s``: building the initial Model Map and Model Scatterplot (layout, tooltips,
  figures and their JSON) from the fetched forest; ``overview_ratio`` = overview_s / floor_s;
* ``selection_details_ms``: explaining a 300-model selection and drawing its bar charts;
* ``browser_map_ms``: headless Chromium, app running with its reader warmed, from a fresh
  page's navigation start to the map painted (median of 3); ``longest_task_ms``: the longest
  main-thread task (PerformanceObserver "longtask") meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

EXPERIMENT = "overview-benchmark"

LONGTASK_INIT = """
window.__longest = 0;
new PerformanceObserver(list => { for (const e of list.getEntries()) {
  window.__longest = Math.max(window.__longest, e.duration); } })
  .observe({type: 'longtask', buffered: true});
"""
MAP_PAINTED = """() => {
  const g = document.querySelector('#ov-map .js-plotly-plot');
  return !!(g && g._fullData && g._fullData.length > 3 && g.querySelector('.main-svg'));
}"""


def build_store(store: Path, n: int) -> str:
    from mlflow_cc.track.tracking import set_metric_info
    from testing.synthetic import build_random_forest

    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None and len(client.search_runs([exp.experiment_id], max_results=n)) >= n:
        return uri
    exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT)
    set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment=EXPERIMENT,
                    tracking_uri=uri)
    t = time.perf_counter()
    build_random_forest(client, exp_id, n)
    print(f"built {n} models in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return uri


def server_side(uri: str) -> dict[str, float]:
    import plotly.io as pio

    from dash_app.figures.details import details_figure
    from dash_app.figures.encoding import default_metrics
    from dash_app.figures.hover import hover_texts
    from dash_app.figures.overview import overview_figures
    from dash_app.state import empty_state
    from mlflow_cc.analysis.selection import explain_selection
    from mlflow_cc.metric_info import info_for
    from mlflow_cc.read.reader import ExperimentReader

    reader = ExperimentReader(EXPERIMENT, uri)
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
            "selection_size": len(selected)}


def browser_side(uri: str) -> dict[str, float]:
    from browser import launch, serve

    from dash_app.app import create_app
    from mlflow_cc.read.reader import ExperimentReader

    reader = ExperimentReader(EXPERIMENT, uri)
    reader.forest()  # warmed, as the paper's server has its JSON
    served = serve(create_app(reader, refresh_ms=60_000))
    b = launch()
    try:
        b.page.goto(served.url)  # one warm-up load (server caches, browser code cache)
        b.page.wait_for_function(MAP_PAINTED, timeout=60_000)
        times, longest = [], []
        for _ in range(3):
            ctx = b.browser.new_context(viewport={"width": 1600, "height": 1000})
            page = ctx.new_page()
            page.add_init_script(LONGTASK_INIT)
            page.goto(served.url)
            page.wait_for_function(MAP_PAINTED, timeout=60_000, polling="raf")
            painted = page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                                    "requestAnimationFrame(() => r(performance.now()))))")
            times.append(painted)
            longest.append(page.evaluate("() => window.__longest"))
            ctx.close()
        errors = list(b.errors)
    finally:
        b.close()
        served.stop()
    return {"browser_map_ms": round(statistics.median(times)), "longest_task_ms": round(max(longest)),
            "browser_console_errors": len(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--store", type=Path, default=None, help="Reuse a store folder across runs.")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="cc-overview-"))
    store.mkdir(parents=True, exist_ok=True)
    uri = build_store(store, args.n)
    out = server_side(uri)
    if not args.no_browser:
        out.update(browser_side(uri))
    out["targets"] = {"overview_ratio": 0.5, "selection_details_ms": 200, "browser_map_ms": 2000,
                      "longest_task_ms": 500}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
