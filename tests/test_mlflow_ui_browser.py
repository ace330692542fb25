"""The models appear nested under their parents in the ordinary MLflow UI (real server, real browser)."""

from __future__ import annotations

from pathlib import Path

import mlflow

from testing.local_server import MlflowServer
from testing.synthetic import build_study_shape


def test_runs_are_nested_in_mlflow_ui(mlflow_server: MlflowServer, browser, screenshot_dir: Path,
                                      experiment_name: str) -> None:
    build_study_shape(experiment_name, tracking_uri=mlflow_server.url)
    exp_id = mlflow.MlflowClient(mlflow_server.url).get_experiment_by_name(experiment_name).experiment_id
    page = browser.browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{mlflow_server.url}/#/experiments/{exp_id}/runs", wait_until="load")
    # Only the base model is a top-level row; its derived models are nested under it.
    base_cell = page.locator("[role=gridcell]", has_text="cnn-base").first
    base_cell.wait_for(timeout=60_000)
    assert page.locator("[role=gridcell]", has_text="mag50_cal").count() == 0
    page.screenshot(path=str(screenshot_dir / "mlflow-ui-collapsed.png"))
    base_cell.locator("button").first.click()  # the nested-runs expander
    page.locator("[role=gridcell]", has_text="grad30").first.wait_for(timeout=15_000)
    # Children of the base (depth 1) are listed; grandchildren stay folded under their parents.
    assert page.locator("[role=gridcell]", has_text="q8").count() >= 1
    page.screenshot(path=str(screenshot_dir / "mlflow-ui-nested.png"))
    assert errors == []
    page.close()
