"""Issue 14 §1 and §4 in a real browser (Playwright + Debian Chromium) on a small synthetic store:

* Behaviours marks significant differences, shows the test in tooltips and headers, and
  *significant only* filters the rows (also from the URL);
* a flag is removed with its button, and the flag list polls only while the comparison shows;
* Selection Details says what changed, in words, from the common ancestor.

The store: a base ``cnn`` (90 % correct on 10 classes × 100 instances), ``pruned`` and its
child ``tuned`` that get 40 % of the rare classes 3 and 8 wrong (identical elsewhere), and
``small`` (quantized) that changes 1 % of predictions at random.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from browser import Browser, serve
from mlflow.tracking import MlflowClient
from waiting import INFLIGHT, TIMEOUT_S, dash_callback, painted, settle, wait_until

from dash_app.app import create_app
from mlflow_cc import contract
from mlflow_cc.analysis.behaviour_runs import compare_behaviour_runs
from mlflow_cc.analysis.significance import behaviour_significance
from mlflow_cc.artifacts import log_dataset, log_outputs
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.track.flags import add_flag
from mlflow_cc.track.tracking import derive_model, log_base_model

EXPERIMENT = "significance"
SHOTS = Path("/work/screens/significance")
GRID = ".cmp-beh .cmp-grid"
ROW_KEYS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el || !window.dash_ag_grid) return null;
  const api = dash_ag_grid.getApi(JSON.parse(el.id));
  if (!api) return null;
  const keys = [];
  api.forEachNode(n => { if (n.data) keys.push(n.data.key); });
  return keys.sort();
}"""


def _logits(pred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    logits = rng.normal(0, 0.3, (len(pred), 10)).astype(np.float32)
    logits[np.arange(len(pred)), pred] += 4.0
    return logits


def _build(uri: str) -> dict[str, str]:
    rng = np.random.default_rng(0)
    client = MlflowClient(uri)
    n = 1000
    ids = [f"x{i:04d}" for i in range(n)]
    labels = np.repeat(np.arange(10), 100)
    base_pred = np.where(rng.random(n) < 0.9, labels, (labels + 1 + rng.integers(0, 9, n)) % 10)
    rare = np.isin(labels, [3, 8])
    hurt = np.where(rare & (rng.random(n) < 0.4), (labels + 1) % 10, base_pred)
    noisy = np.where(rng.random(n) < 0.01, (base_pred + 1) % 10, base_pred)
    with log_base_model("cnn", experiment=EXPERIMENT, tracking_uri=uri) as base:
        pass
    instances = pd.DataFrame({"instance_id": ids, "label": labels, "meta_group": np.where(rare, "rare", "common")})
    dataset = log_dataset(base.experiment_id, "digits-like", instances, None, [f"digit {i}" for i in range(10)],
                          client=client)
    with derive_model(base.run_id, "prune", {"sparsity": 0.9, "method": "global_magnitude"}, name="pruned",
                      tracking_uri=uri) as pruned:
        pass
    with derive_model(pruned.run_id, "finetune", {"epochs": 2}, name="tuned", tracking_uri=uri) as tuned:
        pass
    with derive_model(base.run_id, "quantize", {}, name="small", tracking_uri=uri) as small:
        pass
    runs = {"cnn": base.run_id, "pruned": pruned.run_id, "tuned": tuned.run_id, "small": small.run_id}
    for name, pred in (("cnn", base_pred), ("pruned", hurt), ("tuned", hurt), ("small", noisy)):
        log_outputs(runs[name], ids, _logits(pred, rng), labels, dataset="digits-like", dataset_run_id=dataset,
                    client=client)
    return runs


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('significance') / 'store.db'}"
    runs = _build(uri)
    reader = ExperimentReader(EXPERIMENT, uri)
    app = serve(create_app(reader, refresh_ms=2000))
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield {"uri": uri, "runs": runs, "app": app, "exp": reader.experiment_id}
    app.stop()


def _open(browser: Browser, url: str) -> tuple[Any, Any, list[str]]:
    context = browser.browser.new_context(viewport={"width": 1500, "height": 1000})
    context.add_init_script(INFLIGHT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return context, page, errors


def _url(store: dict[str, Any], names: list[str], query: str = "") -> str:
    sel = ",".join(store["runs"][n] for n in names)
    return f"{store['app'].url}/?experiment={store['exp']}&sel={sel}&{query}"


def _keys(page: Any, count: int | None = None) -> list[str]:
    """The grid's row keys once it has ``count`` rows (any number > 0 if None)."""
    def ready() -> list[str] | None:
        keys = page.evaluate(ROW_KEYS, GRID)
        return keys if keys and (count is None or len(keys) == count) else None
    return wait_until(ready, message=f"{count} grid rows")


def test_significant_only_filters_the_grid(store: dict[str, Any], browser: Browser) -> None:
    runs = store["runs"]
    names = ["cnn", "pruned", "tuned", "small"]
    # What the analysis says, read straight from the store.
    result = compare_behaviour_runs(MlflowClient(store["uri"]), runs["cnn"], [runs[n] for n in names[1:]])
    table = behaviour_significance(result, "correct")
    significant = table[table.significant.astype(bool)]
    expected_classes = sorted(set(significant[significant.partition == "classes"].key))
    expected_subgroups = sorted(set(significant[significant.partition == "subgroups"].key))
    assert expected_classes == ["3", "8"] and expected_subgroups == ["group=rare"]  # the store's design

    ctx, page, errors = _open(browser, _url(store, names, "tab=comparison&rows=classes&rel=rel&metric=correct"))
    try:
        assert len(_keys(page, 10)) == 10
        settle(page)
        # Markers: pruned and tuned (columns v1, v2) in rows 3 and 8; none in row 0 or for small (v3).
        for key in ("3", "8"):
            for col in ("v1", "v2"):
                page.locator(f"{GRID} .ag-row[row-id='{key}'] .ag-cell[col-id='{col}'] .cmp-sig").wait_for()
        assert page.locator(f"{GRID} .ag-row[row-id='0'] .cmp-sig").count() == 0
        assert page.locator(f"{GRID} .ag-cell[col-id='v3'] .cmp-sig").count() == 0
        tip = page.locator(f"{GRID} .ag-row[row-id='3'] .ag-cell[col-id='v1'] .cmp-bar").get_attribute("title")
        assert "McNemar exact" in tip and "significant at FDR 5%" in tip and "[" in tip, tip
        # Headers: each model's overall difference with its interval.
        deltas = page.locator(f"{GRID} .cmp-h-delta")
        assert deltas.count() == 3
        texts = deltas.all_inner_texts()  # relative values: the header has Δ, this line the interval
        assert all(t.startswith("CI [") and t.count("%") == 1 for t in texts), texts
        assert texts[0].endswith("✱") and texts[1].endswith("✱"), texts  # pruned and tuned: -9 points
        painted(page)
        page.screenshot(path=str(SHOTS / "significance-all-rows.png"), full_page=True)

        page.locator("#cmp-beh-sig input").check()
        assert _keys(page, len(expected_classes)) == expected_classes  # the other rows disappear
        page.wait_for_function("() => location.search.includes('sig=on')")
        settle(page)
        painted(page)
        page.screenshot(path=str(SHOTS / "significance-significant-only.png"), full_page=True)
        # Subgroup rows: only the rare group differs.
        page.locator("#cmp-beh-rows input[value='subgroups']").check()
        assert _keys(page, len(expected_subgroups)) == expected_subgroups
        # The filter is in the URL: a reload keeps it.
        settle(page)
        page.reload()
        assert _keys(page, len(expected_subgroups)) == expected_subgroups
        assert page.locator("#cmp-beh-sig input").is_checked()
        page.locator("#cmp-beh-sig input").uncheck()
        assert _keys(page, 2) == ["group=common", "group=rare"]  # the rows appear again
    finally:
        ctx.close()
    assert errors == [], errors


def test_remove_flag_and_polling_only_on_the_comparison(store: dict[str, Any], browser: Browser) -> None:
    runs = store["runs"]
    client = MlflowClient(store["uri"])
    flag = add_flag(client, runs["pruned"], "remove <i>me</i> later", user="reviewer")
    polls: list[str] = []
    ctx, page, errors = _open(browser, _url(store, ["cnn", "pruned"], "tab=comparison&rows=classes"))
    page.on("request", lambda r: polls.append(r.url) if r.method == "POST" and "cmp-flag-interval.n_intervals"
            in (r.post_data or "") else None)

    def polled(count: int) -> bool:
        page.evaluate("() => 0")  # Playwright delivers the page's events while it is called
        return len(polls) >= count

    try:
        item = page.locator("#cmp-flag-list .cmp-flag-item").filter(has_text="remove <i>me</i> later")
        item.wait_for()
        wait_until(lambda: polled(2), message="the flag list polling on the comparison tab")
        # A poll that finds the same flags leaves the list alone: the same button stays on the page.
        item.locator("button.cmp-flag-rm").evaluate("b => { b.ccMark = 'kept'; }")
        wait_until(lambda: polled(4), message="two more polls")
        settle(page)
        assert item.locator("button.cmp-flag-rm").evaluate("b => b.ccMark") == "kept"
        item.locator("button.cmp-flag-rm").click()
        page.wait_for_function("() => document.querySelector('#cmp-flag-msg').innerText.includes('removed')")
        item.wait_for(state="detached")
        tags = client.get_run(runs["pruned"]).data.tags
        assert contract.TAG_FLAG_PREFIX + flag.id not in tags
        # The overview tab: the server turns the polling off.
        with page.expect_response(dash_callback("app-tabs.value", "cmp-flag-interval")) as response:
            page.locator("#app-tabs .tab").filter(has_text="Compression Overview").click()
        assert response.value.json()["response"]["cmp-flag-interval"]["disabled"] is True
        settle(page)
        seen = len(polls)
        # What changed, in words (Selection Details) while the comparison is hidden.
        page.goto(_url(store, ["tuned", "small"]))
        changed = page.locator("#ov-what-changed")
        changed.wait_for()
        text = changed.inner_text()
        assert "What changed from cnn (the common ancestor)" in text, text
        assert "tuned: prune 90% magnitude → finetune 2 ep" in text and "small: quantize" in text, text
        settle(page)
        painted(page)
        page.locator("#ov-details").screenshot(path=str(SHOTS / "what-changed.png"))
        assert not polled(seen + 1)  # no flag polls while the overview showed
        with page.expect_response(dash_callback("app-tabs.value", "cmp-flag-interval")) as response:
            page.locator("#app-tabs .tab").filter(has_text="Performance Comparison").click()
        assert response.value.json()["response"]["cmp-flag-interval"]["disabled"] is False
        wait_until(lambda: polled(seen + 1), message="polling again on the comparison tab")
    finally:
        ctx.close()
    assert errors == [], errors
