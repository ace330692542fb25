"""Large experiments without a browser: bulk-built stores, the density layer's picks, find by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from dash_app.figures.density import DENSE_MIN
from dash_app.figures.encoding import default_metrics
from dash_app.figures.overview import dense_pick, overview_figures, scatter_models
from dash_app.state import empty_state
from dash_app.views.find import matches
from mlflow_cc.read.lineage import Forest
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.read.snapshot import SnapshotStore, node_record
from testing.bulk_store import bulk_random_forest, seed_snapshot
from testing.synthetic import random_forest


def _state(forest: Forest) -> dict:
    return {**empty_state(), "ready": True, **default_metrics(forest, {})}


def _shape(forest: Forest) -> list[tuple]:
    return sorted((n.name, forest.nodes[n.parent_id].name if n.parent_id else None, n.operation,
                   sorted(n.metrics.items()), sorted(n.op_params.items())) for n in forest.nodes.values())


def test_a_bulk_store_reads_back_as_the_generator_and_its_snapshot_as_a_full_read(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = bulk_random_forest(uri, "bulk", 120)
    full = ExperimentReader("bulk", uri).forest()
    assert len(ids) == len(full) == 120
    assert _shape(full) == _shape(random_forest(120))  # what build_random_forest writes, model for model
    assert seed_snapshot(uri, "bulk", tmp_path / "snap") == 120
    reader = ExperimentReader("bulk", uri, snapshot=SnapshotStore(tmp_path / "snap"))
    reopened = reader.forest()
    assert reader.opened_from_snapshot
    assert sorted(map(repr, map(node_record, reopened.nodes.values()))) == \
        sorted(map(repr, map(node_record, full.nodes.values())))


def test_a_large_scatterplot_is_a_density_layer_whose_cells_and_boxes_pick_models() -> None:
    forest = random_forest(DENSE_MIN + 500)
    state = _state(forest)
    _, scatter, _ = overview_figures(forest, {}, state)
    names = [t.name for t in scatter.data]
    assert "density" in names and "models" not in names and "selected" in names
    heat = next(t for t in scatter.data if t.name == "density")
    z = np.array(heat.z, dtype=float)
    # every selectable model is in exactly one cell: the cells' counts add up
    counts = [int(t.split("</b>")[0].split()[0].lstrip("<b>")) for row in heat.text for t in row if t]
    assert sum(counts) == len(scatter_models(forest, state))
    # a click on a cell picks exactly the models its tooltip counts
    j, i = np.argwhere(~np.isnan(z))[len(np.argwhere(~np.isnan(z))) // 2]
    picked = dense_pick(forest, {}, state, {"kind": "click", "cell": [heat.x[i], heat.y[j]]})
    assert len(picked) == int(heat.text[j][i].split("</b>")[0].split()[0].lstrip("<b>")) > 0
    # a box picks the models inside it, and only those
    x, y = state["x"], state["y"]
    xs = sorted(forest.nodes[r].metrics[x] for r in forest.nodes)
    lo, hi = xs[len(xs) // 4], xs[len(xs) // 2]
    box = dense_pick(forest, {}, state, {"kind": "box", "range": {"x": [hi, lo], "y": [-1e9, 1e9]}})
    want = {r for r in scatter_models(forest, state) if lo <= forest.nodes[r].metrics[x] <= hi}
    assert set(box) == want and 0 < len(box) < len(forest)
    assert all(y in forest.nodes[r].metrics for r in box)


def test_a_small_scatterplot_keeps_a_marker_per_model() -> None:
    forest = random_forest(200)
    _, scatter, _ = overview_figures(forest, {}, _state(forest))
    models = next(t for t in scatter.data if t.name == "models")
    assert len(models.customdata) == 200 and "density" not in [t.name for t in scatter.data]


def test_find_lists_names_containing_the_text_starting_ones_first() -> None:
    forest = random_forest(3000)
    opts = matches(forest, "MODEL-12")
    labels = [o["label"] for o in opts]
    assert labels[0] == "model-12" and all("model-12" in label for label in labels)
    assert len(opts) == 30 and all(o["value"] in forest.nodes for o in opts)
    assert matches(forest, "   ") == [] and matches(forest, "no such model") == []


def test_a_refresh_with_nothing_new_keeps_the_forest_and_a_change_rebuilds_it(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from mlflow_cc.track.tracking import set_metric_info

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bulk_random_forest(uri, "refresh", 40)
    reader = ExperimentReader("refresh", uri)
    first = reader.forest()
    assert reader.refresh() is first  # views and their caches keyed on the forest stay valid
    set_metric_info("accuracy", direction="max", format=".2%", experiment="refresh", tracking_uri=uri)
    second = reader.refresh()
    assert second is not first and reader.metric_info["accuracy"].format == ".2%"
    client = MlflowClient(uri)
    run = client.create_run(reader.experiment_id, run_name="late", start_time=2**41)
    third = reader.refresh()
    assert third is not second and run.info.run_id in third.nodes and len(third) == 41


@pytest.mark.parametrize("n", [60, DENSE_MIN + 500])
def test_figures_built_without_validators_are_valid_plotly_figures(n: int) -> None:
    """The map and scatterplot skip Plotly's validators while being built (half their server time):
    rebuilt through the validators, every property passes and the JSON is the same."""
    forest = random_forest(n)
    state = {**_state(forest), "sel": list(forest.nodes)[:3]}
    for fig in overview_figures(forest, {}, state)[:2]:
        checked = go.Figure(fig.to_dict())  # validates every property; raises on an invalid one
        assert json.loads(pio.to_json(checked)) == json.loads(pio.to_json(fig, validate=False))
