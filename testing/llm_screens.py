"""Scripted Playwright session over a built ``llm-repair`` experiment (issue 11's browser check):
the broken model's changed answers (Behaviours, instance rows, answer change rate, sorted by the
broken model) and its Layers as a list of modules sorted by its change (the norm layers first).

    python testing/llm_screens.py URI EXPERIMENT "BROKEN MODEL NAME" TAG [OUT_DIR]

Starts ``mlflow-cc ui`` on a free port (this checkout first on the path), saves
``<TAG>-behaviours-instances.png`` and ``<TAG>-layers-sorted.png`` and prints the Layers status line
and first rows. Needs a built experiment: too slow for the test suite with the real model.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from mlflow.tracking import MlflowClient
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from testing.local_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:

    uri, experiment, broken_name, tag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])}
    print(sorted(runs))
    base = next(v for k, v in runs.items() if "SmolLM2" in k or "tiny-llama" in k)
    broken = runs[broken_name]
    port = free_port()
    env = dict(os.environ, MLFLOW_CC_CACHE_DIR=tempfile.mkdtemp(), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "mlflow_cc.cli", "ui", "--tracking-uri", uri, "--experiment", experiment,
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = sys.argv[5] if len(sys.argv) > 5 else "/work/screens/gen-llm"
    try:
        pw = sync_playwright().start()
        br = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = br.new_page(viewport={"width": 1600, "height": 1100})
        for _ in range(240):
            try:
                page.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                break
            except PlaywrightError:  # not listening yet
                time.sleep(1)
        q = {"experiment": exp.experiment_id, "sel": f"{base},{broken}", "tab": "comparison", "ctab": "behaviours",
             "rows": "instances", "metric": "answer_changed", "bsort": f"{broken}:desc"}
        page.goto(f"http://127.0.0.1:{port}/?{urlencode(q)}")
        page.wait_for_selector(".ag-row", timeout=300_000)
        page.wait_for_timeout(4000)
        page.screenshot(path=f"{out}/{tag}-behaviours-instances.png", full_page=True)
        q.update(ctab="layers", lview="list", lsort=broken)
        page.goto(f"http://127.0.0.1:{port}/?{urlencode(q)}")
        page.wait_for_selector("#cmp-lay-grid .ag-row", timeout=600_000)
        page.wait_for_timeout(4000)
        page.screenshot(path=f"{out}/{tag}-layers-sorted.png", full_page=True)
        print(page.inner_text("#cmp-lay-status"))
        rows = page.locator("#cmp-lay-grid .ag-row").all_inner_texts()[:8]
        print("\n".join(r.replace("\n", " | ")[:120] for r in rows))
        br.close(); pw.stop()
    finally:
        proc.terminate(); proc.wait(timeout=30)


if __name__ == "__main__":
    main()
