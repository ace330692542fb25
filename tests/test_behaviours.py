"""Behaviour metrics against hand-computed values, alignment by instance id, paging, speed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlflow_cc import artifacts as aio
from mlflow_cc.analysis import behaviours as bh
from mlflow_cc.analysis.behaviour_runs import compare_behaviour_runs
from mlflow_cc.analysis.behaviours import column, compare_behaviours, page
from mlflow_cc.artifacts import Outputs
from mlflow_cc.errors import ArtifactError

LN3 = math.log(3.0)
IDS = np.array(["i0", "i1", "i2", "i3"], dtype=object)
LABELS = np.array([0, 1, 0, -1])  # i3: label unknown
# softmax([ln3, 0]) = [3/4, 1/4]; softmax([0, 0]) = [1/2, 1/2]
BASE_LOGITS = np.array([[LN3, 0.0], [0.0, 0.0], [0.0, LN3], [LN3, 0.0]], dtype=np.float32)
MODEL_LOGITS = np.array([[0.0, 0.0], [0.0, LN3], [0.0, LN3], [0.0, LN3]], dtype=np.float32)
META = pd.DataFrame({"instance_id": IDS, "meta_rare": [True, True, False, False]})


def _outputs(logits: np.ndarray, preds: list[int], ids: np.ndarray = IDS, labels: np.ndarray = LABELS) -> Outputs:
    return Outputs(instance_ids=ids, labels=labels, predictions=np.array(preds), logits=logits)


@pytest.fixture
def result() -> bh.Behaviours:
    base = _outputs(BASE_LOGITS, [0, 0, 1, 0])
    model = _outputs(MODEL_LOGITS, [0, 1, 1, 1])
    return compare_behaviours(base, {"m": model}, base_key="b", dataset=META, class_names=["cat", "dog"])


def _col(result: bh.Behaviours, metric: str, model: str) -> list[float]:
    return result.instances[column(metric, model)].tolist()


def _approx(values: list[float]) -> object:
    return pytest.approx(values, nan_ok=True)


def test_per_instance_metrics_match_hand_computed(result: bh.Behaviours) -> None:
    nan = math.nan
    assert result.models == ["b", "m"]
    assert _col(result, "correct", "b") == _approx([1, 0, 0, nan])
    assert _col(result, "correct", "m") == _approx([1, 1, 0, nan])
    assert _col(result, "flip", "m") == _approx([0, 1, 0, 1])
    assert _col(result, "flip", "b") == _approx([0, 0, 0, 0])
    assert _col(result, "confidence", "b") == _approx([0.75, 0.5, 0.25, nan])
    assert _col(result, "confidence", "m") == _approx([0.5, 0.75, 0.25, nan])
    assert _col(result, "logit_mse", "m") == _approx([LN3**2 / 2, LN3**2 / 2, 0, LN3**2])
    kl = [0.75 * math.log(1.5) + 0.25 * math.log(0.5), 0.5 * math.log(2) + 0.5 * math.log(2 / 3), 0.0, 0.5 * LN3]
    assert _col(result, "kl", "m") == _approx(kl)
    assert _col(result, "kl", "b") == _approx([0, 0, 0, 0])
    assert _col(result, "prediction", "m") == [0, 1, 1, 1]
    assert result.instances["label_name"].tolist()[:3] == ["cat", "dog", "cat"]
    assert pd.isna(result.instances["label_name"].iloc[3])
    rel = result.instance_table(relative=True)
    assert rel[column("confidence", "m")].tolist() == _approx([-0.25, 0.25, 0.0, nan])
    assert rel[column("confidence", "b")].tolist() == _approx([0, 0, 0, nan])


def test_class_subgroup_and_overall_aggregates(result: bh.Behaviours) -> None:
    classes = result.by_class()
    assert classes["label"].tolist() == [0, 1] and classes["label_name"].tolist() == ["cat", "dog"]
    assert classes["count"].tolist() == [2, 1]
    assert classes[column("correct", "b")].tolist() == [0.5, 0.0]
    assert classes[column("correct", "m")].tolist() == [0.5, 1.0]
    assert classes[column("confidence", "m")].tolist() == pytest.approx([0.375, 0.75])
    rel = result.by_class(relative=True)
    assert rel[column("correct", "m")].tolist() == [0.0, 1.0]
    # class 0 = {i0, i2}: base (0.75 + 0.25) / 2, model (0.5 + 0.25) / 2
    assert rel[column("confidence", "m")].tolist() == pytest.approx([-0.125, 0.25])

    groups = result.by_subgroup()
    assert groups[["attribute", "value", "count"]].values.tolist() == [["rare", "False", 2], ["rare", "True", 2]]
    assert groups[column("correct", "m")].tolist() == [0.0, 1.0]  # False: only i2 has a label
    assert groups[column("flip", "m")].tolist() == [0.5, 0.5]
    assert result.by_subgroup(["rare"], relative=True)[column("correct", "m")].tolist() == [0.0, 0.5]

    overall = result.overall()
    assert overall.loc["b", "correct"] == pytest.approx(1 / 3)
    assert overall.loc["m", "correct"] == pytest.approx(2 / 3)
    assert overall.loc["m", "flip"] == 0.5
    assert result.overall(relative=True).loc["m", "correct"] == pytest.approx(1 / 3)


def test_prediction_changes(result: bh.Behaviours) -> None:
    changes = result.prediction_changes()
    assert changes[["model", "base_prediction", "model_prediction", "count"]].values.tolist() == [["m", 0, 1, 2]]
    assert changes["fraction"].tolist() == [0.5]
    assert changes["base_prediction_name"].tolist() == ["cat"] and changes["model_prediction_name"].tolist() == ["dog"]


def test_missing_and_extra_instances_and_other_class_count() -> None:
    base = _outputs(BASE_LOGITS, [0, 0, 1, 0])
    # Lacks i2, has zz, and lists its instances in another order.
    short = _outputs(MODEL_LOGITS[[3, 0, 1, 1]], [1, 0, 1, 0], ids=np.array(["i3", "i0", "i1", "zz"], dtype=object))
    wide = _outputs(np.zeros((4, 3), np.float32), [2, 2, 2, 2])
    result = compare_behaviours(base, {"short": short, "wide": wide})
    assert result.missing["short"] == 1 and result.extra["short"] == 1
    assert _col(result, "flip", "short") == _approx([0, 1, math.nan, 1])
    assert _col(result, "correct", "short") == _approx([1, 1, math.nan, math.nan])
    assert _col(result, "logit_mse", "short") == _approx([LN3**2 / 2, LN3**2 / 2, math.nan, LN3**2])
    assert any("missing" in note for note in result.notes["short"])
    assert all(math.isnan(v) for v in _col(result, "kl", "wide"))  # 3 classes vs 2: not comparable
    assert any("classes" in note for note in result.notes["wide"])
    assert _col(result, "confidence", "wide") == _approx([1 / 3, 1 / 3, 1 / 3, math.nan])
    assert result.by_class()["count"].tolist() == [2, 1]


def test_broken_model_with_nan_logits_does_not_poison_other_rows() -> None:
    broken = MODEL_LOGITS.copy()
    broken[1] = np.nan
    result = compare_behaviours(_outputs(BASE_LOGITS, [0, 0, 1, 0]), {"m": _outputs(broken, [0, 1, 1, 1])})
    assert _col(result, "kl", "m")[1] != _col(result, "kl", "m")[1]  # NaN where the model gave NaN
    assert _col(result, "kl", "m")[3] == pytest.approx(0.5 * LN3, rel=1e-6)
    assert _col(result, "correct", "m")[1] == 1.0  # the logged prediction still counts
    assert result.by_class()[column("confidence", "m")].tolist() == pytest.approx([0.375, math.nan], nan_ok=True)


def test_registered_metrics_per_instance_and_per_group() -> None:
    def margin_drop(base: bh.ModelArrays, model: bh.ModelArrays) -> np.ndarray:
        return base.probs.max(axis=1) - model.probs.max(axis=1)

    def agreement(base: bh.ModelArrays, model: bh.ModelArrays) -> float:
        both = base.valid & model.valid
        return float(np.mean(base.predictions[both] == model.predictions[both]))

    bh.register_metric("margin_drop", margin_drop, higher_is_better=False)
    bh.register_metric("agreement", agreement, per_instance=False)
    try:
        with pytest.raises(ValueError, match="already registered"):
            bh.register_metric("agreement", agreement)
        result = compare_behaviours(_outputs(BASE_LOGITS, [0, 0, 1, 0]), {"m": _outputs(MODEL_LOGITS, [0, 1, 1, 1])},
                                    base_key="b", dataset=META)
        assert _col(result, "margin_drop", "m") == _approx([0.25, -0.25, 0.0, 0.0])
        assert column("agreement", "m") not in result.instances.columns
        assert result.overall().loc["m", "agreement"] == 0.5
        assert result.overall().loc["b", "agreement"] == 1.0
        assert result.by_subgroup()[column("agreement", "m")].tolist() == [0.5, 0.5]
        assert result.by_class()[column("agreement", "m")].tolist() == [1.0, 0.0]
        only = compare_behaviours(_outputs(BASE_LOGITS, [0, 0, 1, 0]), {}, metrics=["flip"])
        assert only.instance_metrics == ["flip"]
    finally:
        bh.unregister_metric("margin_drop")
        bh.unregister_metric("agreement")
    assert "agreement" not in bh.registered_metrics()
    with pytest.raises(ValueError):
        bh.register_metric("a|b", margin_drop)


def test_page_sorts_filters_and_slices_on_the_server() -> None:
    table = pd.DataFrame({"id": ["a", "b", "c", "d", "e", "f"], "v": [0.5, np.nan, 2.0, 0.5, -1.0, 3.0],
                          "g": ["x", "y", "x", "x", "y", "x"]})
    desc = page(table, "v", ascending=False, limit=10)
    assert desc.rows["id"].tolist() == ["f", "c", "a", "d", "e", "b"]  # NaN last; ties keep order
    asc = page(table, "v", ascending=True, limit=10)
    assert asc.rows["id"].tolist() == ["e", "a", "d", "c", "f", "b"]
    p = page(table, "v", ascending=False, filters=[("g", "==", "x"), ("v", ">=", 0.5)], offset=1, limit=2,
             columns=["id"])
    assert p.total == 4 and p.offset == 1 and p.rows.columns.tolist() == ["id"] and p.rows["id"].tolist() == ["c", "a"]
    assert page(table, "id", ascending=False, limit=2).rows["id"].tolist() == ["f", "e"]
    assert page(table, filters=[("v", "isnull", None)]).rows["id"].tolist() == ["b"]
    assert page(table, filters=[("id", "in", ["a", "f"])]).total == 2
    assert page(table, filters=[("g", "contains", "Y")]).total == 2
    assert page(table, filters=[("v", "<", 1.0)]).rows["id"].tolist() == ["a", "d", "e"]  # NaN never matches
    assert page(table, filters=[("v", ">", "1.5")]).rows["id"].tolist() == ["c", "f"]  # text from a URL
    with pytest.raises(ValueError):
        page(table, filters=[("v", "~", 1)])


def test_hundred_thousand_instances_twelve_models() -> None:
    rng = np.random.default_rng(0)
    n, k = 100_000, 10
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    labels = rng.integers(0, k, n)

    def model(noise: float) -> Outputs:
        logits = (rng.normal(size=(n, k)) * noise + np.eye(k)[labels] * 3).astype(np.float32)
        return Outputs(ids, labels, logits.argmax(1), logits)

    base, models = model(1.0), {f"m{j}": model(1.0 + 0.1 * j) for j in range(12)}
    meta = pd.DataFrame({"instance_id": ids, "meta_rare": labels < 2})
    result = compare_behaviours(base, models, dataset=meta)
    first = page(result.instances, column("kl", "m5"), ascending=False, limit=50)
    result.by_class()
    assert first.total == n and len(first.rows) == 50
    assert first.rows[column("kl", "m5")].is_monotonic_decreasing
    # Its speed is measured by benchmarks/comparison.py (behaviours_compare_ms, first page), not here.


def test_from_logged_outputs_in_a_real_store(sqlite_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("bias", artifact_location=str(tmp_path / "artifacts"))
    ds = aio.log_dataset(exp, "toy", pd.DataFrame({"instance_id": IDS, "label": [0, 1, 0, None],
                                                  "meta_rare": [True, True, False, False]}),
                         class_names=["cat", "dog"], client=client)
    runs = {k: client.create_run(exp).info.run_id for k in ("base", "pruned", "none", "broken")}
    for name, logits, preds in (("base", BASE_LOGITS, [0, 0, 1, 0]), ("pruned", MODEL_LOGITS, [0, 1, 1, 1]),
                                ("broken", MODEL_LOGITS, [0, 1, 1, 1])):
        aio.log_outputs(runs[name], IDS, logits, LABELS, predictions=np.array(preds), dataset="toy",
                        dataset_run_id=ds, client=client)
    (Path(client.get_run(runs["broken"]).info.artifact_uri) / "mlflow_cc/outputs.parquet").write_bytes(b"PAR1")
    result = compare_behaviour_runs(client, runs["base"], [runs["base"], runs["pruned"], runs["none"],
                                                              runs["broken"]])
    assert result.models == [runs["base"], runs["pruned"]]
    assert result.unavailable == {runs["none"]: "not logged", runs["broken"]: "unreadable"}
    assert result.dataset is not None and result.dataset.name == "toy"
    groups = result.by_subgroup(relative=True)
    assert groups[column("correct", runs["pruned"])].tolist() == [0.0, 0.5]
    assert result.by_class()["label_name"].tolist() == ["cat", "dog"]
    assert _col(result, "kl", runs["pruned"])[3] == pytest.approx(0.5 * LN3, rel=1e-6)
    assert result.instance_table(relative=True) is result.instance_table(relative=True)  # cached for paging
    with pytest.raises(ArtifactError):
        compare_behaviour_runs(client, runs["none"], [runs["base"]])
