"""Performance Comparison read side and figures: base choice, behaviour tables, layer tree, flags, cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from comparison_fixtures import log_models
from mlflow.tracking import MlflowClient

from dash_app.comparison import (
    Comparisons,
    Drill,
    choose_base,
    default_base,
    load_behaviour_set,
    load_layer_set,
)
from dash_app.figures import behaviours as bfig
from dash_app.figures import layers as lfig
from mlflow_cc import contract
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.track.flags import (
    FlagBoard,
    add_flag,
    instance_target,
    parse_flags,
    read_flags,
)


@pytest.fixture
def logged(sqlite_uri: str, experiment_name: str):
    return log_models(experiment_name, sqlite_uri, n_models=4, n_instances=300, skip_outputs=(3,),
                      skip_layers=(2,))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_default_base_is_the_closest_common_ancestor_with_outputs(logged, sqlite_uri: str) -> None:
    forest = ExperimentReader(logged.experiment_id, sqlite_uri).forest()
    root, children = logged.run_ids[0], logged.run_ids[1:]
    assert default_base(forest, logged.run_ids[::-1]) == root
    choice = choose_base(forest, logged.run_ids)
    assert choice is not None and not choice.added and choice.reason == "the selection's closest common ancestor, selected"
    # Siblings without their parent: the parent (not selected) is the base, added to the comparison.
    choice = choose_base(forest, children[::-1])
    assert choice is not None and choice.run_id == root and choice.added
    assert choice.reason == "the selection's closest common ancestor, added to the comparison"
    # One model is its own common ancestor; the user's pick among the selected wins.
    assert default_base(forest, [children[1]]) == children[1]
    assert choose_base(forest, children, requested=children[2]) == choose_base(forest, children, children[2])
    assert choose_base(forest, children, requested=children[2]).reason == "chosen by you"  # type: ignore[union-attr]
    assert choose_base(forest, children, requested="nope").run_id == root  # type: ignore[union-attr]
    assert default_base(forest, []) is None


def test_default_base_skips_an_ancestor_without_outputs(sqlite_uri: str, experiment_name: str) -> None:
    import mlflow_cc as cc

    logged = log_models(experiment_name, sqlite_uri, n_models=2, n_instances=50, with_layers=False)
    with cc.derive_model(logged.run_ids[1], "finetune", {"epochs": 1}, tracking_uri=sqlite_uri) as mid:
        pass  # no outputs logged
    kids = []
    for epochs in (1, 2):
        with cc.derive_model(mid, "quantize", {"bits": 8 * epochs}, tracking_uri=sqlite_uri) as kid:
            kids.append(kid.run_id)
    forest = ExperimentReader(logged.experiment_id, sqlite_uri).forest()
    choice = choose_base(forest, kids)
    assert choice is not None and choice.run_id == logged.run_ids[1] and choice.added
    assert "closest ancestor with outputs" in choice.reason and mid.name in choice.reason


def test_behaviour_tables_match_direct_computation(logged, sqlite_uri: str) -> None:
    client = MlflowClient(sqlite_uri)
    data = load_behaviour_set(client, logged.run_ids[0], logged.run_ids)
    assert data.unavailable == {logged.run_ids[3]: "not logged"}
    labels = logged.labels
    rare = np.isin(labels, [3, 8])
    base_correct = logged.logits[logged.run_ids[0]].argmax(1) == labels
    model_correct = logged.logits[logged.run_ids[2]].argmax(1) == labels
    table = data.table("subgroups", "correct", True).set_index("key")
    expected = model_correct[rare].mean() - base_correct[rare].mean()
    assert table.loc["group=rare", "v2"] == pytest.approx(expected)
    assert table.loc["group=rare", "v0"] == pytest.approx(base_correct[rare].mean())  # the base stays absolute
    assert np.isnan(table.loc["group=rare", "v3"])  # no outputs: empty column
    # Confidence per class 3, absolute.
    probs = _softmax(logged.logits[logged.run_ids[1]].astype(np.float64))
    conf = probs[np.arange(len(labels)), labels]
    classes = data.table("classes", "confidence", False).set_index("key")
    assert classes.loc["3", "v1"] == pytest.approx(conf[labels == 3].mean(), rel=1e-5)
    # Server-side paging: sorted, filtered, only the requested rows.
    page = data.page("instances", "confidence", False, sort=[("v1", True)], filters=[("v1", "<", 0.5)],
                     offset=0, limit=7)
    assert len(page.rows) == 7 and page.total == int((conf < 0.5).sum())
    assert list(page.rows["v1"]) == pytest.approx(sorted(conf[conf < 0.5])[:7], rel=1e-5)
    drilled = data.page("instances", "correct", False, drill=Drill.parse("class:3"), limit=1000)
    assert drilled.total == int((labels == 3).sum())
    assert set(data.previews(list(drilled.rows["key"][:3]))) == set(drilled.rows["key"][:3])
    changes = data.prediction_changes(top=3)
    assert set(changes) == set(logged.run_ids[1:]) and changes[logged.run_ids[3]] == []
    summaries = data.summaries("correct", False)
    assert summaries[0]["value"] == pytest.approx(base_correct.mean())
    assert summaries[3]["missing"] == "not logged"


def test_unreadable_outputs_and_missing_base(logged, sqlite_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(sqlite_uri)
    bad = tmp_path / "outputs.parquet"
    bad.write_bytes(b"not parquet")
    client.log_artifact(logged.run_ids[3], str(bad), "mlflow_cc")
    data = load_behaviour_set(client, logged.run_ids[0], logged.run_ids)
    assert data.unavailable[logged.run_ids[3]] == "unreadable"
    no_base = load_behaviour_set(client, logged.run_ids[3], logged.run_ids)
    assert no_base.behaviours is None and "choose another base" in (no_base.problem or "")


def test_layer_tree_rows(logged, sqlite_uri: str) -> None:
    client = MlflowClient(sqlite_uri)
    layers = load_layer_set(client, logged.run_ids[0], logged.run_ids, "weights")
    assert layers.unavailable == {logged.run_ids[2]: "not logged"}
    top = layers.rows()
    assert [r["id"] for r in top] == ["encoder", "head"]
    opened = layers.rows(expanded=["encoder", "encoder.layer", "encoder.layer.0"])
    ids = [r["id"] for r in opened]
    assert ids.index("encoder.layer.0.dense") < ids.index("encoder.layer.1")
    cell = {r["id"]: r for r in opened}["encoder.layer.0.dense"]["cells"][logged.run_ids[3]]
    assert cell["change"] > 0 and cell["split"][1] > 0.5  # pruned at 75 %
    assert sum(cell["buckets"]) == pytest.approx(1.0, abs=1e-3)
    assert {r["id"]: r for r in opened}["encoder.layer.0.dense"]["cells"][logged.run_ids[2]]["unavailable"]
    # Sorting the flat list by change puts the pruned dense layers before the untouched norms.
    flat = [r["id"] for r in layers.rows(flat=True, sort_model=logged.run_ids[3])]
    assert flat[-1].endswith("norm") and "dense" in flat[0]
    # A name pattern keeps matches and their ancestors.
    matched = [r["id"] for r in layers.rows(pattern="*norm")]
    assert "encoder.layer.1.norm" in matched and "encoder" in matched and "head" not in matched
    tensor_row = next(r for r in layers.rows(expanded=layers.all_parents()) if r["id"] == "head.weight")
    assert tensor_row["cells"][logged.run_ids[1]]["hist"]
    payload = lfig.rows_payload([tensor_row], layers.models, "weights")
    assert max(max(b, default=0) for b in payload[0]["cells"]["m1"]["hist"]) == 100


def test_comparisons_cache_by_key(logged, sqlite_uri: str) -> None:
    cache = Comparisons(MlflowClient(sqlite_uri))
    first = cache.behaviours(logged.run_ids[0], logged.run_ids)
    assert cache.behaviours(logged.run_ids[0], logged.run_ids) is first
    other = cache.behaviours(logged.run_ids[1], logged.run_ids)
    assert other is not first and other.base == logged.run_ids[1]
    layers = cache.layers(logged.run_ids[0], logged.run_ids)
    assert cache.layers_in_background(logged.run_ids[0], logged.run_ids) is layers


def test_flags_round_trip(logged, sqlite_uri: str) -> None:
    client = MlflowClient(sqlite_uri)
    board = FlagBoard(client, ttl_s=60)
    assert board.flags(logged.run_ids) == []
    flag = board.add(logged.run_ids[1], "  rare classes  <b>worse</b> ", instance_target("img-00003"))
    assert flag.note == "rare classes <b>worse</b>"  # kept as plain text, never parsed
    add_flag(MlflowClient(sqlite_uri), logged.run_ids[2], "check this model", user="teammate")
    seen = read_flags(MlflowClient(sqlite_uri), logged.run_ids)  # another session's client
    assert {(f.run_id, f.target, f.user) for f in seen} >= {(logged.run_ids[2], "model", "teammate"),
                                                             (logged.run_ids[1], "instance:img-00003", flag.user)}
    tags = client.get_run(logged.run_ids[1]).data.tags
    value = json.loads(tags[contract.TAG_FLAG_PREFIX + flag.id])
    assert value["target"] == "instance:img-00003" and set(value) == {"target", "note", "user", "time"}
    assert parse_flags("r", {contract.TAG_FLAG_PREFIX + "x": "not json"}) == []
    with pytest.raises(ValueError):
        add_flag(client, logged.run_ids[1], "   ")


def test_figure_helpers() -> None:
    assert bfig.filter_spec({"v1": {"filterType": "number", "type": "lessThan", "filter": 0.5},
                             "v2": {"filterType": "number", "type": "inRange", "filter": 0, "filterTo": 1},
                             "name": {"filterType": "text", "type": "contains", "filter": "rare"}}) == [
        ("v1", "<", 0.5), ("v2", ">=", 0.0), ("v2", "<=", 1.0), ("name", "contains", "rare")]
    assert bfig.sort_spec([{"colId": "v3", "sort": "desc"}]) == [("v3", False)]
    assert bfig.value_text("correct", -0.0345, True) == "-3.45%"
    assert bfig.value_text("kl", 0.01234) == "0.0123"
    assert bfig.title_width("90% magnitude → finetune") > bfig.title_width("prune 90%")
    legend = [c for _, c in lfig.legend("weights")]
    assert legend[legend.index("zeroed (pruned)") + 1] == "not compared (shape differs)"
    assert legend[-1].startswith("Δ = change vs the base")


def test_shape_differs_is_shown_not_raised(logged, sqlite_uri: str) -> None:
    import pandas as pd
    from comparison_fixtures import layer_arrays

    from mlflow_cc.artifacts import log_layers, summarize_tensor
    from mlflow_cc.track.tracking import derive_model

    weights = layer_arrays(np.random.default_rng(5))
    weights["head.weight"] = weights["head.weight"][:6]  # structured pruning: 4 output rows removed
    with derive_model(logged.run_ids[0], "prune", {"structured": True}, tracking_uri=sqlite_uri) as run:
        summary = pd.DataFrame([summarize_tensor(n.rsplit(".", 1)[0], n.rsplit(".", 1)[1], "Linear", a)
                                for n, a in weights.items()])
        log_layers(run.run_id, summary, weights, client=MlflowClient(sqlite_uri))
    layers = load_layer_set(MlflowClient(sqlite_uri), logged.run_ids[0], [logged.run_ids[0], run.run_id])
    rows = {r["id"]: r for r in layers.rows(expanded=layers.all_parents())}
    assert rows["head.weight"]["cells"][run.run_id]["status"] == "shape differs"
    assert rows["head"]["cells"][run.run_id]["status"] == "shape differs (1)"
    payload = lfig.rows_payload([rows["head.weight"]], layers.models, "weights")
    hist = payload[0]["cells"]["m1"]["hist"]
    assert all(len(b) == 0 or all(v == 0 for v in b[:5]) for b in hist)  # only "not compared" values
