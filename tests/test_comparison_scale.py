"""The large-comparison paths give the same answers as the plain ones: first-rows sort, id arrays,
lazily computed metric columns, shared base arrays, previews read by row group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from mlflow.tracking import MlflowClient

from dash_app.comparison.behaviour_set import load_behaviour_set
from dash_app.comparison.preview_index import PreviewIndex
from mlflow_cc.analysis.behaviour_columns import ids_to_arrow
from mlflow_cc.analysis.behaviour_runs import load_compared_outputs
from mlflow_cc.analysis.behaviours import compare_behaviours
from mlflow_cc.analysis.table_page import page
from mlflow_cc.artifacts import Outputs, log_dataset, log_outputs
from mlflow_cc.artifacts.outputs import id_strings
from mlflow_cc.track.tracking import derive_model, log_base_model


def _reference_order(values: np.ndarray, ascending: bool) -> np.ndarray:
    nan = np.isnan(values)
    keyed = np.where(nan, 0.0, values if ascending else -values)
    return np.lexsort((keyed, nan))


@pytest.mark.parametrize("ascending", [True, False])
def test_first_rows_of_a_large_table_are_the_fully_sorted_ones(ascending: bool) -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    values = rng.integers(0, 50, n).astype(np.float64) / 10  # many ties
    values[rng.random(n) < 0.1] = np.nan
    values[:3] = [np.inf, -np.inf, np.inf]
    table = pd.DataFrame({"id": np.arange(n), "v": values})
    full = _reference_order(values, ascending)
    for offset, limit in ((0, 100), (250, 100), (0, 1), (19_990, 100), (5_000, 3_000)):
        got = page(table, "v", ascending=ascending, offset=offset, limit=limit)
        assert got.rows["id"].tolist() == full[offset:offset + limit].tolist(), (offset, limit)
        assert got.total == n
    # all values in a narrow band below +inf: the partition still finds the first rows
    finite = rng.normal(size=n)
    table = pd.DataFrame({"id": np.arange(n), "v": finite})
    got = page(table, "v", ascending=ascending, limit=100)
    assert got.rows["id"].tolist() == _reference_order(finite, ascending)[:100].tolist()


def test_id_strings_and_arrow_round_trip() -> None:
    ascii_ids = pa.chunked_array([pa.array(["a", "bcd", ""]), pa.array(["xyz12"])])
    got = id_strings(ascii_ids)
    assert got.dtype.kind == "U" and got.tolist() == ["a", "bcd", "", "xyz12"]
    assert ids_to_arrow(got).to_pylist() == ["a", "bcd", "", "xyz12"]
    unicode_ids = pa.array(["é", "x"])
    assert id_strings(unicode_ids).tolist() == ["é", "x"]
    assert ids_to_arrow(np.array(["é", "x"])).to_pylist() == ["é", "x"]
    assert id_strings(pa.array(["x", "y", "z"]).slice(1)).tolist() == ["y", "z"]
    assert id_strings(pa.array([], pa.string())).tolist() == []
    with pytest.raises(ValueError):
        id_strings(pa.array(["a", None]))


def _outputs(ids: list[str], logits: np.ndarray, labels: np.ndarray) -> Outputs:
    return Outputs(np.array(ids), labels, logits.argmax(1), logits.astype(np.float32))


def test_a_model_in_another_order_or_with_missing_rows_gets_the_same_values() -> None:
    rng = np.random.default_rng(2)
    n, k = 500, 4
    ids = [f"i{j}" for j in range(n)]
    labels = rng.integers(0, k, n)
    base = _outputs(ids, rng.normal(size=(n, k)), labels)
    logits = rng.normal(size=(n, k))
    same = _outputs(ids, logits, labels)
    order = rng.permutation(n)[: n - 20]  # shuffled, 20 instances missing
    shuffled = _outputs([ids[j] for j in order], logits[order], labels[order])
    result = compare_behaviours(base, {"same": same, "shuffled": shuffled})
    kept = np.zeros(n, bool)
    kept[order] = True
    for metric in result.instance_metrics:
        a, b = result.values(metric, "same"), result.values(metric, "shuffled")
        np.testing.assert_allclose(b[kept], a[kept], rtol=1e-6)
        assert np.isnan(b[~kept]).all()
    assert result.missing == {"base": 0, "same": 0, "shuffled": 20}
    wide = result.instances  # the whole table, built on demand, agrees with the columns
    np.testing.assert_allclose(wide["kl|same"].to_numpy(), result.values("kl", "same"))


def test_models_share_the_base_arrays_and_pages_show_previews(sqlite_uri: str, experiment_name: str) -> None:
    client = MlflowClient(sqlite_uri)
    rng = np.random.default_rng(3)
    n = 9_000  # previews span three Parquet row groups
    ids = [f"x{j:05d}" for j in range(n)]
    labels = rng.integers(0, 3, n)
    with log_base_model("base", experiment=experiment_name) as base:
        pass
    runs = [base.run_id]
    for j in range(2):
        with derive_model(base.run_id, "prune", {"sparsity": 0.1 * (j + 1)}) as child:
            pass
        runs.append(child.run_id)
    previews = pd.DataFrame({"instance_id": ids, "kind": "text", "value": [f"text of {i}" for i in ids]})
    dataset = log_dataset(base.experiment_id, "d", pd.DataFrame({"instance_id": ids, "label": labels}), previews,
                          ["a", "b", "c"], client=client)
    for run_id in runs:
        log_outputs(run_id, ids, rng.normal(size=(n, 3)), labels, dataset="d", dataset_run_id=dataset, client=client)
    loaded = load_compared_outputs(client, runs[0], runs)
    assert all(m.instance_ids is loaded.base.instance_ids for m in loaded.models.values())
    assert all(m.labels is loaded.base.labels for m in loaded.models.values())
    data = load_behaviour_set(client, runs[0], runs)
    first = data.page("instances", "confidence", True, sort=[("v2", False)], limit=5)
    keys = first.rows["key"].astype(str).tolist()
    expected = np.argsort(-(data.behaviours.values("confidence", runs[2]) - data.behaviours.values("confidence", runs[0])),
                          kind="stable")[:5]
    assert keys == [ids[j] for j in expected]
    shown = data.previews(keys + ["x08999", "x00000", "not-an-id"])
    assert shown["x08999"] == ("text", "text of x08999") and shown["x00000"] == ("text", "text of x00000")
    assert all(shown[key] == ("text", f"text of {key}") for key in keys) and "not-an-id" not in shown
    assert PreviewIndex(client, runs[0]).lookup(["x00000"]) == {}  # a run without previews: none, no error


def test_metrics_computed_in_row_blocks_equal_whole_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow_cc.analysis.behaviour_columns as columns

    rng = np.random.default_rng(4)
    n, k = 1_000, 5
    ids = [f"i{j}" for j in range(n)]
    labels = rng.integers(-1, k, n)  # some unknown labels
    base = _outputs(ids, rng.normal(size=(n, k)), labels)
    logits = rng.normal(size=(n, k))
    logits[7] = np.nan
    order = rng.permutation(n)[: n - 30]
    models = {"same": _outputs(ids, logits, labels),
              "shuffled": _outputs([ids[j] for j in order], logits[order], labels[order])}
    monkeypatch.setattr(columns, "CHUNK_ROWS", 10**9)
    whole = compare_behaviours(base, models)
    expected = {(metric, key): whole.values(metric, key) for metric in whole.instance_metrics for key in whole.models}
    monkeypatch.setattr(columns, "CHUNK_ROWS", 37)
    blocks = compare_behaviours(base, models)
    for (metric, key), values in expected.items():
        np.testing.assert_allclose(blocks.values(metric, key), values, rtol=1e-6, err_msg=f"{metric} {key}")
