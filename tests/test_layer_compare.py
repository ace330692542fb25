"""Layer comparison: sparsity split, change-split histograms on shared bins, mismatches, streaming."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlflow_cc import artifacts as aio
from mlflow_cc import contract
from mlflow_cc.analysis import layer_compare as lc
from mlflow_cc.analysis.layer_compare import (
    ArraySource,
    compare_layer_runs,
    compare_layers,
)

BASE = np.array([1, 1, 1, 1, 1, 2, 0, 0], dtype=np.float32)
MODEL = np.array([1, 1.005, 1.05, 1.2, 3, 0, 0, 0.5], dtype=np.float32)
# relative change: 0, .5%, 5%, 20%, 200%, zeroed (model-only zero), zero in both, base-only zero -> large


def _row(result: lc.LayerComparison, name: str, model: str) -> pd.Series:
    t = result.tensors
    return t[(t["name"] == name) & (t["model"] == model)].iloc[0]


def test_sparsity_split_change_buckets_and_score() -> None:
    result = compare_layers(ArraySource({"fc.weight": BASE}), {"m": ArraySource({"fc.weight": MODEL})}, bins=3)
    hist = result.histograms["fc.weight"]
    # Shared range spans base and model: the model's 3.0 lies outside the base's [0, 2] and is kept.
    np.testing.assert_allclose(hist.edges, [0, 1, 2, 3])
    assert hist.counts["m"].tolist() == [
        [1, 2, 0],  # unchanged: 1.0 -> bin 1, 1.005 -> bin 1, 0 (zero in both) -> bin 0
        [0, 1, 0],  # small: 1.05
        [0, 1, 0],  # medium: 1.2
        [1, 0, 1],  # large: 0.5 (base 0) -> bin 0, 3.0 -> last bin
        [1, 0, 0],  # zeroed: 2 -> 0
        [0, 0, 0],  # not compared
    ]
    assert hist.counts["base"].tolist()[0] == [2, 5, 1] and hist.counts["base"][1:].sum() == 0
    row = _row(result, "fc.weight", "m")
    assert row["status"] == "ok" and row["module"] == "fc" and row["numel"] == 8 and row["zeros"] == 2
    assert (row["zero_both_frac"], row["zero_model_only_frac"], row["zero_base_only_frac"]) == (1 / 8, 1 / 8, 1 / 8)
    assert row["sparsity"] == 2 / 8
    assert row["changed_frac"] == 5 / 8
    diff_sq = 0.005**2 + 0.05**2 + 0.2**2 + 2**2 + 2**2 + 0.5**2
    assert row["change"] == pytest.approx(math.sqrt(diff_sq) / 3.0, rel=1e-5)
    base_row = _row(result, "fc.weight", "base")
    assert base_row["status"] == "base" and base_row["change"] == 0 and base_row["zero_both_frac"] == 2 / 8
    assert lc.CHANGE_BUCKETS == ("unchanged", "small", "medium", "large", "zeroed", "not compared")


def test_counts_cover_every_value_of_every_model() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=1000).astype(np.float32)
    models = {"wide": base * 10, "shifted": base + 100, "same": base.copy()}
    result = compare_layers(ArraySource({"w": base}), {k: ArraySource({"w": v}) for k, v in models.items()}, bins=16)
    hist = result.histograms["w"]
    assert hist.edges[0] == pytest.approx(float(models["wide"].min()))
    assert hist.edges[-1] == pytest.approx(float(models["shifted"].max()))
    for key in ["base", *models]:
        assert hist.counts[key].sum() == 1000, key  # nothing dropped outside the base's range
    assert _row(result, "w", "same")["change"] == 0
    order = result.tensors[result.tensors["model"] != "base"].sort_values("change", ascending=False)["model"]
    assert order.tolist()[0] == "shifted" and order.tolist()[-1] == "same"


def test_shape_differs_and_missing_tensors_never_fail() -> None:
    base = {"a.lin.weight": np.ones((4, 3)), "a.lin.bias": np.ones(4), "head.weight": np.ones(2)}
    model = {"a.lin.weight": np.ones((2, 3)) * 5, "a.lin.bias": np.ones(4), "new.weight": np.zeros(3)}
    result = compare_layers(ArraySource(base), {"m": ArraySource(model)}, bins=4)
    assert result.tensors["name"].unique().tolist() == ["a.lin.weight", "a.lin.bias", "head.weight", "new.weight"]
    shape = _row(result, "a.lin.weight", "m")
    assert shape["status"] == lc.STATUS_SHAPE and shape["shape"] == [2, 3] and shape["numel"] == 6
    assert math.isnan(shape["change"]) and math.isnan(shape["zero_model_only_frac"])
    counts = result.histograms["a.lin.weight"].counts["m"]
    assert counts[lc.NOT_COMPARED].sum() == 6 and counts.sum() == 6  # histogram without element-wise change
    assert result.histograms["a.lin.weight"].edges[-1] == 5.0
    assert _row(result, "head.weight", "m")["status"] == lc.STATUS_MISSING
    assert "m" not in result.histograms["head.weight"].counts
    assert _row(result, "new.weight", "m")["status"] == lc.STATUS_NEW
    assert _row(result, "new.weight", "base")["status"] == lc.STATUS_MISSING
    assert _row(result, "new.weight", "m")["sparsity"] == 1.0
    assert _row(result, "a.lin.bias", "m")["change"] == 0


def test_module_tree_sums_children() -> None:
    base = {"enc.l0.weight": np.array([1.0, 2.0, 0.0, 4.0]), "enc.l0.bias": np.array([1.0, 1.0]),
            "enc.l1.weight": np.array([3.0, 4.0]), "head.weight": np.array([1.0])}
    model = {"enc.l0.weight": np.array([0.0, 2.0, 0.0, 4.0]), "enc.l0.bias": np.array([1.0, 0.0]),
             "enc.l1.weight": np.array([3.0, 4.0, 5.0]), "head.weight": np.array([1.0])}
    tree = compare_layers(ArraySource(base), {"m": ArraySource(model)}).module_tree()
    m = tree[tree["model"] == "m"].set_index("module")
    assert m.index.tolist() == ["", "enc", "enc.l0", "enc.l1", "head"]
    assert m.loc["enc.l0", "n_tensors"] == 2 and m.loc["enc.l0", "numel"] == 6
    assert m.loc["enc.l0", "zero_model_only_frac"] == 2 / 6 and m.loc["enc.l0", "zero_both_frac"] == 1 / 6
    assert m.loc["enc.l0", "change"] == pytest.approx(math.sqrt(2) / math.sqrt(23))
    # enc.l1's shape differs: counted in numel and flagged, left out of the element-wise sums.
    assert m.loc["enc", "numel"] == 9 and m.loc["enc", "n_shape_differs"] == 1
    assert m.loc["enc", "zero_model_only_frac"] == 2 / 6
    assert m.loc["", "n_tensors"] == 4 and m.loc["", "numel"] == 10
    assert m.loc["", "change"] == pytest.approx(math.sqrt(2) / math.sqrt(24))
    assert m.loc["enc.l0", "parent"] == "enc" and m.loc["enc", "parent"] == "" and m.loc["", "depth"] == 0
    assert m.loc["enc.l0", "depth"] == 2


def test_activations_are_keyed_by_module_and_nonfinite_values_counted() -> None:
    base = {"enc.l0": np.array([0.5, 1.0, -1.0]), "enc": np.array([1.0, 2.0])}
    model = {"enc.l0": np.array([0.5, np.nan, np.inf]), "enc": np.array([1.0, 2.0])}
    result = compare_layers(ArraySource(base), {"m": ArraySource(model)}, kind="activations", bins=2)
    assert result.tensors["module"].unique().tolist() == ["enc.l0", "enc"]
    row = _row(result, "enc.l0", "m")
    assert row["nonfinite"] == 2 and row["status"] == "ok"
    assert result.histograms["enc.l0"].counts["m"].sum() == 1  # only the finite value is drawn
    assert np.isfinite(result.histograms["enc.l0"].edges).all()
    tree = result.module_tree()
    assert tree[(tree["module"] == "enc") & (tree["model"] == "m")]["n_tensors"].item() == 2


def test_chunked_streaming_equals_whole_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    base = {"w": rng.normal(size=(50, 7)).astype(np.float32)}
    model = {"w": np.where(rng.random((50, 7)) < 0.4, 0, base["w"] * rng.uniform(0.5, 1.5, (50, 7)))}
    whole = compare_layers(ArraySource(base), {"m": ArraySource(model)})
    monkeypatch.setattr(lc, "CHUNK", 16)
    chunked = compare_layers(ArraySource(base), {"m": ArraySource(model)})
    pd.testing.assert_frame_equal(whole.tensors, chunked.tensors, rtol=1e-5)  # float32 sums per chunk
    np.testing.assert_array_equal(whole.histograms["w"].counts["m"], chunked.histograms["w"].counts["m"])


class _LazySource:
    """Makes each tensor on request, so only what the comparison holds is ever allocated."""

    def __init__(self, seed: int, names: list[str], size: int) -> None:
        self.seed, self.names, self.size = seed, names, size

    def keys(self) -> list[str]:
        return list(self.names)

    def shape(self, name: str) -> tuple[int, ...]:
        return (self.size,)

    def get(self, name: str) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.names.index(name)])
        return rng.standard_normal(self.size, dtype=np.float32)


def test_peak_memory_is_about_one_tensor_per_model() -> None:
    names, size = [f"layer{i}.weight" for i in range(4)], 1 << 20  # 4 MB per tensor
    models = {f"m{i}": _LazySource(i + 1, names, size) for i in range(6)}
    tracemalloc.start()
    try:
        result = compare_layers(_LazySource(0, names, size), models)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    naive = 7 * len(names) * size * 4  # every state dict at once: 112 MB
    assert len(result.tensors) == 28
    assert peak < naive / 4, f"peak {peak / 2**20:.0f} MB vs naive {naive / 2**20:.0f} MB"


def test_compare_logged_runs_with_missing_and_corrupt_models(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("layers", artifact_location=str(tmp_path / "artifacts"))
    weights = {"fc.weight": BASE.reshape(2, 4), "fc.bias": np.array([0.5, 0.0])}
    summary = pd.DataFrame([aio.summarize_tensor("fc", n.split(".")[1], "Linear", w) for n, w in weights.items()])
    runs = {k: client.create_run(exp).info.run_id for k in ("base", "pruned", "none", "broken")}
    aio.log_layers(runs["base"], summary, weights, {"fc": np.arange(4.0)}, client=client)
    aio.log_layers(runs["pruned"], summary, {"fc.weight": MODEL.reshape(2, 4), "fc.bias": np.array([0.0, 0.0])},
                   {"fc": np.arange(4.0) * 2}, client=client)
    aio.log_layers(runs["broken"], summary, weights, client=client)
    weights_file = Path(client.get_run(runs["broken"]).info.artifact_uri) / contract.ARTIFACT_WEIGHTS
    weights_file.write_bytes(weights_file.read_bytes()[:40])
    result = compare_layer_runs(client, runs["base"], [runs["pruned"], runs["none"], runs["broken"]], bins=3)
    assert result.unavailable == {runs["none"]: "not logged", runs["broken"]: "unreadable"}
    assert result.models == [runs["base"], runs["pruned"]]
    assert result.histograms["fc.weight"].counts[runs["pruned"]][lc.ZEROED].sum() == 1
    assert _row(result, "fc.bias", runs["pruned"])["zero_model_only_frac"] == 0.5
    acts = compare_layer_runs(client, runs["base"], [runs["pruned"]], kind="activations")
    assert _row(acts, "fc", runs["pruned"])["change"] == pytest.approx(1.0)
