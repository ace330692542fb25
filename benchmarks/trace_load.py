"""Where a cold load of the Compression Overview spends the browser's main thread (a Chromium trace).

    python benchmarks/trace_load.py [--size 52] [--out trace.json] [--top 25]

Starts the app as ``benchmarks/overview.py`` does (a server just started, its cache folder holding
only the reader's snapshot), warms the browser up with one untimed load, then loads the page once
more in a fresh context under a Chromium performance trace until the map is drawn and the page has
settled. Prints the main thread's tasks longer than 30 ms with what they ran (script evaluation
per URL, function calls, style, layout, paint, parsing), then the totals per kind.

Keys of the JSON line printed last:

* ``size``: models in the experiment.
* ``map_ms``: navigation start to every node marker of the map drawn (as ``overview.py``).
* ``tasks``: main-thread tasks longer than 30 ms: ``start_ms`` (from navigation start), ``ms``,
  and ``what`` (the largest child events, ``name[:url or function]`` and their ms).
* ``totals_ms``: summed time per event kind over the whole load (nested events counted in their own
  kind only: self time).
* ``scripts_ms``: script evaluation and compilation per script URL (the largest 12).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overview import DONE, PAGE_INIT, TIMEOUT_MS, App, prepare_store

CATEGORIES = ("devtools.timeline,disabled-by-default-devtools.timeline,v8.execute,"
              "disabled-by-default-v8.compile,blink.user_timing")
KINDS = {"EvaluateScript", "v8.compile", "v8.compileModule", "FunctionCall", "TimerFire",
         "EventDispatch", "FireAnimationFrame", "ParseHTML", "ParseAuthorStyleSheet",
         "UpdateLayoutTree", "Layout", "Paint", "PrePaint", "Layerize", "Commit", "v8.run",
         "XHRReadyStateChange", "ResourceReceivedData", "v8.produceCache", "MajorGC", "MinorGC",
         "V8.GC_MC_BACKGROUND", "BlinkGC.AtomicPhase", "HitTest", "ScheduleStyleRecalculation",
         "RunMicrotasks", "v8.evaluateModule", "V8.GCScavenger", "V8.GCFinalizeMC"}


def label(ev: dict[str, Any]) -> str:
    data = (ev.get("args") or {}).get("data") or {}
    url = data.get("url") or (ev.get("args") or {}).get("fileName") or ""
    fn = data.get("functionName") or ""
    tail = url.rsplit("/", 1)[-1].split("?")[0] if url else ""
    return ev["name"] + (f":{tail}" if tail else "") + (f":{fn}" if fn else "")


def analyse(events: list[dict[str, Any]], nav_ts: float, top: int) -> dict[str, Any]:
    threads = {(e["pid"], e["tid"]) for e in events
               if e.get("name") == "thread_name" and (e.get("args") or {}).get("name") == "CrRendererMain"}
    main = [e for e in events if (e.get("pid"), e.get("tid")) in threads and e.get("ph") == "X" and "dur" in e]
    main.sort(key=lambda e: (e["ts"], -e["dur"]))
    tasks = [e for e in main if e["name"] in ("RunTask", "ThreadControllerImpl::RunTask") and e["dur"] > 30_000
             and e["ts"] >= nav_ts]
    out_tasks = []
    for t in tasks:
        end = t["ts"] + t["dur"]
        inner = defaultdict(float)
        for e in main:
            if t["ts"] <= e["ts"] < end and e is not t and e["name"] in KINDS:
                inner[label(e)] += e["dur"] / 1000
        what = sorted(inner.items(), key=lambda kv: -kv[1])[:6]
        out_tasks.append({"start_ms": round((t["ts"] - nav_ts) / 1000), "ms": round(t["dur"] / 1000),
                          "what": [f"{k} {v:.0f}" for k, v in what]})
    # self time per kind: an event's duration minus that of its direct children of a known kind
    totals: dict[str, float] = defaultdict(float)
    scripts: dict[str, float] = defaultdict(float)
    stack: list[list[Any]] = []
    for e in (e for e in main if e["name"] in KINDS and e["ts"] >= nav_ts):
        while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            stack[-1][1] -= e["dur"]
        item = [e, e["dur"]]
        stack.append(item)
        totals[e["name"]] += e["dur"] / 1000
        if e["name"] in ("EvaluateScript", "v8.compile"):
            scripts[label(e).split(":", 1)[-1]] += e["dur"] / 1000
    return {"tasks": out_tasks[:top],
            "totals_ms": {k: round(v) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            "scripts_ms": dict(sorted(((k, round(v)) for k, v in scripts.items()), key=lambda kv: -kv[1])[:12])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=52)
    ap.add_argument("--out", type=Path, default=None, help="Keep the raw trace here.")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    from browser import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    uri, experiment, snaps = prepare_store(args.size, None)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for traced in (False, True):
            app = App(uri, experiment, snaps)
            try:
                ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
                page = ctx.new_page()
                page.add_init_script(PAGE_INIT)
                if traced:
                    browser.start_tracing(page=page, categories=CATEGORIES.split(","))
                page.goto(app.url, timeout=TIMEOUT_MS)
                page.wait_for_function(DONE, timeout=TIMEOUT_MS, polling=100)
                map_ms = page.evaluate("() => window.__mapAll")
                raw = browser.stop_tracing() if traced else None
                ctx.close()
            finally:
                app.stop()
        browser.close()
    if args.out:
        args.out.write_bytes(raw)
    trace = json.loads(raw)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    nav = [e["ts"] for e in events if e.get("name") == "navigationStart"]
    nav_ts = min(nav) if nav else min(e["ts"] for e in events if e.get("ts"))
    result = {"size": args.size, "map_ms": round(map_ms), **analyse(events, nav_ts, args.top)}
    for t in result["tasks"]:
        print(f"{t['start_ms']:>6} ms  {t['ms']:>4} ms  " + "; ".join(t["what"]), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
