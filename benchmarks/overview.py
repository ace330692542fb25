"""Compression Overview at several sizes: the browser's cold and warm load, and figures vs fetch.

    python benchmarks/overview.py [--sizes 52,5000,50000] [--repeats 3] [--nocache-max 5000]
                                  [--no-browser] [--cache DIR]

Stores: for each size ``n`` a sqlite experiment ``overview-benchmark-<n>`` of ``n`` random
models (testing/synthetic.py's generator), bulk-written once (testing/bulk_store.py) and kept in
``--cache`` (default ``MLFLOW_CC_BENCH_CACHE`` or ``~/.cache/mlflow-cc-bench``): the 50,000-model
store takes well under a minute to build. The reader's snapshot of it is seeded the same way
(what the app saves after its first full read).

Keys, per size ``<n>`` (every time in ms unless said otherwise):

Server side, in this process:

* ``fetch_s_<n>`` (s): the reader's full fetch of the experiment from the store (no snapshot).
* ``figures_s_<n>`` (s): building the default view's Model Map and Model Scatterplot (layout,
  tooltips, figures and their JSON) from the fetched forest.
* ``figures_ratio_<n>`` = figures_s / fetch_s (the figures-vs-fetch ratio; target <= 0.5).
* ``selection_details_ms_<n>``: explaining a selection of up to 300 models (a root and its
  descendants) and drawing its bar charts, median of 3 (target <= 200).

Browser (headless Chromium through Playwright; the app served by ``mlflow-cc ui``, the command
users run, in a child process). Every page load is a fresh browser context (no HTTP cache, no
storage). The time runs from navigation start to the first animation frame that finds EVERY node
marker of the map drawn (the map's ``path.point`` elements of its "models" and "filtered out" traces
number as many as the models the figure holds), stamped as that frame's callbacks run. The app
draws the map inside a frame's callbacks (``dash_app.fast_start.PREWARM``), so the map was painted
in the frame before; a map drawn in a task between frames (the floor page's) is painted at the end
of the stamping frame, a few ms after the stamp. Until 2026-11-30 the stamp was one frame later
still: that end point is kept as ``map_next_frame_ms_<n>``; any work queued after the map's
drawing (other graphs, the renderer's callbacks) delayed that frame, by 150-250 ms here. The main-thread figures cover the load until the page has
settled: the map drawn, the scatterplot drawn and no request in flight for 0.5 s. Before the
first size, one page load (a throwaway server, a fresh context) warms the browser process up;
it is not timed.

* ``map_ms_<n>``: cold load, median of ``--repeats``: each on a server process just started (no
  figure, layout or tooltip of the experiment computed yet; imports and the app's start-up done:
  Dash's set-up and Plotly's validators, warmed on a made-up three-model forest by
  ``dash_app.fast_start.warm_up`` before the server listens) whose cache folder holds only the
  reader's snapshot of the store, as after an earlier session. Target: 800 / 1500 / 3000 ms at
  52 / 5,000 / 50,000 models.
* ``map_next_frame_ms_<n>``: the same loads, stamped one frame after ``map_ms`` (the end point of
  the earlier sessions' figures), median.
* ``tbt_ms_<n>``: total blocking time (sum over main-thread tasks of their time beyond 50 ms,
  PerformanceObserver "longtask"), median. Target at 52 models: <= 200.
* ``longest_task_ms_<n>``: the longest main-thread task, median. Target: 200 at 5,000, 300 at 50,000.
* ``heap_mb_<n>`` (MB): JS heap in use when the page has settled (CDP ``Performance.getMetrics``
  JSHeapUsedSize), median. Target: 15 at 52, 150 at 50,000.
* ``heap_live_mb_<n>`` (MB): the JS heap in use right after, once the page's garbage is collected
  (CDP ``HeapProfiler.collectGarbage``): what the page holds, median. Not a target key.
* ``map_ms_<n>_warm``, ``map_next_frame_ms_<n>_warm``, ``tbt_ms_<n>_warm``,
  ``longest_task_ms_<n>_warm``, ``heap_mb_<n>_warm``, ``heap_live_mb_<n>_warm``:
  the same on later visits to one of those servers (its reader and caches warm), medians.
* ``map_ms_<n>_nocache``: the very first visit to a server with an EMPTY cache folder (the
  reader's full fetch included), one load; only for sizes up to ``--nocache-max``.
* ``map_nodes_<n>``: node markers drawn at the end point (a mismatch with the figure the server
  builds is reported on stderr).
* ``floor_map_ms_<n>``, ``floor_map_next_frame_ms_<n>``, ``floor_tbt_ms_<n>``,
  ``floor_longest_task_ms_<n>``, ``floor_heap_mb_<n>``, ``floor_heap_live_mb_<n>``: the
  like-for-like floor, measured the same way in the same run (cold loads, fresh contexts, medians
  of ``--repeats``): ``benchmarks/overview_floor.py``, a bare Dash page with the same Dash, React and
  Plotly bundle drawing as many markers as the app's map (``map_nodes_<n>``) in two graphs, no
  callbacks. What the framework costs before mlflow-cc adds anything.
* ``map_ratio_<n>`` = map_ms / floor_map_ms, ``heap_over_floor_mb_<n>`` = heap_mb - floor_heap_mb.
* ``load_<n>``: the 1-minute load average when that size's browser runs began and ended (the
  machine may be shared: times scale with it).

``browser_console_errors``: console and page errors over all loads (expect 0); ``cpus``: CPU
cores; ``targets``: the targets above. The JSON object is the last line printed.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo's testing/ package
sys.path.insert(0, str(ROOT / "tests"))

EXPERIMENT = "overview-benchmark"
#: The map's traces whose markers are models (model_map.py names them so).
NODE_TRACES = ("models", "filtered out")
TIMEOUT_MS = 300_000

# Installed before any page script: collects main-thread long tasks, and checks every animation
# frame for the end point (every node marker drawn; and the frame after it, the former end point);
# then watches for the page to settle (scatterplot drawn, no request started for 0.5 s).
PAGE_INIT = """
window.__tasks = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) window.__tasks.push(e.duration); })
  .observe({type: 'longtask', buffered: true});
window.__mapAll = null; window.__mapNext = null; window.__mapNodes = 0; window.__settled = null;
(function tick() {
  const gd = document.querySelector('#ov-map .js-plotly-plot');
  if (gd && gd._fullData && gd.querySelector('.main-svg')) {
    const names = ['models', 'filtered out'];  // NODE_TRACES
    const want = (gd.data || []).filter(t => names.includes(t.name))
      .reduce((n, t) => n + ((t.customdata && t.customdata.length) || 0), 0);
    let drawn = 0;
    for (const g of gd.querySelectorAll('.scatterlayer g.trace')) {
      const tr = g.__data__ && g.__data__[0] && g.__data__[0].trace;
      if (tr && names.includes(tr.name)) drawn += g.querySelectorAll('path.point').length;
    }
    if (want > 0 && drawn === want) {
      window.__mapNodes = drawn;
      window.__mapAll = performance.now();
      requestAnimationFrame(() => { window.__mapNext = performance.now(); });
      return;
    }
  }
  requestAnimationFrame(tick);
})();
(function settle() {
  let seen = -1, since = 0;
  const timer = setInterval(() => {
    const sc = document.querySelector('#ov-scatter .js-plotly-plot');
    const drawn = sc && sc._fullData && sc._fullData.length && sc.querySelector('.main-svg');
    const n = performance.getEntriesByType('resource').length;
    const now = performance.now();
    if (n !== seen) { seen = n; since = now; }
    if (window.__mapAll !== null && drawn && now - since > 500) {
      window.__settled = now; clearInterval(timer);
    }
  }, 50);
})();
"""
DONE = "() => window.__mapNext !== null && window.__settled !== null"


def prepare_store(n: int, cache: Path | None) -> tuple[str, str, Path]:
    """(tracking URI, experiment, folder holding the reader snapshot) for ``n`` models, built once."""
    from mlflow_cc.read.snapshot import SNAPSHOT_VERSION
    from testing.bulk_store import cached_store, seed_snapshot

    experiment = f"{EXPERIMENT}-{n}"
    t = time.perf_counter()
    uri = cached_store(n, experiment, cache)
    # keyed by the snapshot format: a reader that changed it would discard a stale seed and re-read all
    snaps = Path(uri.split("///", 1)[1]).parent / f"snapshots-v{SNAPSHOT_VERSION}"
    if not snaps.exists():
        tmp = snaps.with_name(f"snapshots.tmp{os.getpid()}")
        seed_snapshot(uri, experiment, tmp)
        tmp.rename(snaps)
    if time.perf_counter() - t > 1:
        print(f"store of {n} models ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return uri, experiment, snaps


def server_side(uri: str, experiment: str) -> tuple[dict[str, Any], int]:
    import plotly.io as pio

    from dash_app.figures.encoding import default_metrics
    from dash_app.figures.overview import overview_figures
    from dash_app.state import empty_state
    from mlflow_cc.read.reader import ExperimentReader
    from testing.synthetic import random_forest

    tiny = random_forest(3)  # Plotly builds its validators on first use: not part of any size's time
    overview_figures(tiny, {}, {**empty_state(), "ready": True, **default_metrics(tiny, {})})
    reader = ExperimentReader(experiment, uri)
    t = time.perf_counter()
    forest = reader.forest()
    fetch = time.perf_counter() - t
    t = time.perf_counter()
    state = {**empty_state(), "ready": True, **default_metrics(forest, reader.metric_info)}
    mfig, sfig, _ = overview_figures(forest, reader.metric_info, state)
    pio.to_json(mfig, validate=False)
    pio.to_json(sfig, validate=False)
    figures = time.perf_counter() - t
    nodes = sum(len(tr.customdata or ()) for tr in mfig.data if tr.name in NODE_TRACES)
    return {"fetch_s": round(fetch, 3), "figures_s": round(figures, 3),
            "figures_ratio": round(figures / fetch, 3),
            "selection_details_ms": selection_details_ms(forest, reader.metric_info)}, nodes


def selection_details_ms(forest: Any, infos: Any) -> float:
    import plotly.io as pio

    from dash_app.figures.details import details_figure
    from mlflow_cc.analysis.selection import explain_selection
    from mlflow_cc.metric_info import info_for

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
    return round(statistics.median(runs) * 1000, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """A web server in a child process (``args``), listening on 127.0.0.1 at ``self.url``."""

    def __init__(self, args: list[str], port: int, **popen: Any) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[:4]} exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"{args[:4]} did not listen within 300 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Floor(Served):
    """``benchmarks/overview_floor.py``: a bare Dash page of ``n`` markers per graph."""

    def __init__(self, n: int) -> None:
        port = free_port()
        super().__init__([sys.executable, str(ROOT / "benchmarks" / "overview_floor.py"),
                          "--port", str(port), "--n", str(n)], port)


class App(Served):
    """``mlflow-cc ui`` with its own cache folder (seeded with ``snapshots``)."""

    def __init__(self, uri: str, experiment: str, snapshots: Path | None) -> None:
        self.cache = Path(tempfile.mkdtemp(prefix="cc-overview-cache-"))
        if snapshots is not None:
            shutil.copytree(snapshots, self.cache / "snapshots")
        port = free_port()
        env = {**os.environ, "MLFLOW_CC_CACHE_DIR": str(self.cache),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        super().__init__([sys.executable, "-m", "mlflow_cc.cli", "ui", "--tracking-uri", uri,
                          "--experiment", experiment, "--port", str(port)], port, env=env, cwd=self.cache)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.cache, ignore_errors=True)


def load_once(browser: Any, url: str, errors: list[str]) -> dict[str, float]:
    """One page load in a fresh browser context: the end point, main-thread tasks and JS heap."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = ctx.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(PAGE_INIT)
        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(url, timeout=TIMEOUT_MS)
        page.wait_for_function(DONE, timeout=TIMEOUT_MS, polling=100)
        out = page.evaluate("() => ({map: window.__mapAll, next: window.__mapNext, nodes: window.__mapNodes, "
                            "tasks: window.__tasks})")
        heap = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["JSHeapUsedSize"]
        cdp.send("HeapProfiler.collectGarbage")
        live = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["JSHeapUsedSize"]
    finally:
        ctx.close()
    tasks = out["tasks"] or [0.0]
    return {"map": out["map"], "next": out["next"], "nodes": out["nodes"], "tbt": sum(max(0.0, t - 50) for t in tasks),
            "longest": max(tasks), "heap": heap / 1e6, "live": live / 1e6}


def summarize(loads: list[dict[str, float]], n: int, suffix: str) -> dict[str, Any]:
    def med(key: str) -> float:
        return statistics.median(x[key] for x in loads)

    return {f"map_ms_{n}{suffix}": round(med("map")), f"map_next_frame_ms_{n}{suffix}": round(med("next")),
            f"tbt_ms_{n}{suffix}": round(med("tbt")),
            f"longest_task_ms_{n}{suffix}": round(med("longest")), f"heap_mb_{n}{suffix}": round(med("heap"), 1),
            f"heap_live_mb_{n}{suffix}": round(med("live"), 1)}


def browser_side(n: int, uri: str, experiment: str, snaps: Path, repeats: int, nocache: bool,
                 browser: Any, errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {f"load_{n}": [round(os.getloadavg()[0], 2)]}
    if nocache:
        app = App(uri, experiment, None)
        try:
            out[f"map_ms_{n}_nocache"] = round(load_once(browser, app.url, errors)["map"])
        finally:
            app.stop()
    cold, warm = [], []
    for i in range(repeats):
        app = App(uri, experiment, snaps)
        try:
            cold.append(load_once(browser, app.url, errors))
            if i == repeats - 1:
                warm = [load_once(browser, app.url, errors) for _ in range(repeats)]
        finally:
            app.stop()
    out.update(summarize(cold, n, ""))
    out.update(summarize(warm, n, "_warm"))
    out[f"map_nodes_{n}"] = cold[0]["nodes"]
    floor = Floor(out[f"map_nodes_{n}"])
    try:
        floor_loads = [load_once(browser, floor.url, errors) for _ in range(repeats)]
    finally:
        floor.stop()
    out.update({f"floor_{k}": v for k, v in summarize(floor_loads, n, "").items()})
    out[f"map_ratio_{n}"] = round(out[f"map_ms_{n}"] / max(out[f"floor_map_ms_{n}"], 1), 2)
    out[f"heap_over_floor_mb_{n}"] = round(out[f"heap_mb_{n}"] - out[f"floor_heap_mb_{n}"], 1)
    out[f"load_{n}"].append(round(os.getloadavg()[0], 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="52,5000,50000", help="Comma-separated numbers of models.")
    ap.add_argument("--repeats", type=int, default=3, help="Cold loads (and warm loads) per size; medians.")
    ap.add_argument("--nocache-max", type=int, default=5000,
                    help="Time a first visit with an empty cache folder up to this size (0: never).")
    ap.add_argument("--cache", type=Path, default=None, help="Folder of the built stores.")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    out: dict[str, Any] = {"sizes": sizes, "cpus": os.cpu_count()}
    errors: list[str] = []
    pw = browser = None
    if not args.no_browser:
        from browser import CHROMIUM, CHROMIUM_ARGS
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        warm_up = browser is not None
        for n in sizes:
            uri, experiment, snaps = prepare_store(n, args.cache)
            if warm_up:  # the browser process's first page is slower whatever it shows: not timed
                app = App(uri, experiment, snaps)
                try:
                    load_once(browser, app.url, errors)
                finally:
                    app.stop()
                warm_up = False
            server, expected = server_side(uri, experiment)
            out.update({f"{k}_{n}": v for k, v in server.items()})
            if browser is not None:
                out.update(browser_side(n, uri, experiment, snaps, args.repeats, n <= args.nocache_max,
                                        browser, errors))
                if out[f"map_nodes_{n}"] != expected:
                    print(f"{n}: map shows {out[f'map_nodes_{n}']} node markers, the default view's "
                          f"figure has {expected}", file=sys.stderr)
            print(json.dumps({k: v for k, v in out.items() if k.endswith(f"_{n}") or f"_{n}_" in k}),
                  file=sys.stderr)
    finally:
        if browser is not None:
            browser.close()
            pw.stop()
    out["browser_console_errors"] = len(errors)
    if errors:
        print("console errors:", *errors[:10], sep="\n  ", file=sys.stderr)
    out["targets"] = {"figures_ratio": 0.5, "selection_details_ms": 200, "map_ms_52": 800, "tbt_ms_52": 200, "heap_mb_52": 15, "map_ms_5000": 1500,
                      "longest_task_ms_5000": 200, "map_ms_50000": 3000, "longest_task_ms_50000": 300,
                      "heap_mb_50000": 150}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
