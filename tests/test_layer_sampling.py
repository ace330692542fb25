"""Large weights stored as a fixed sample: the same positions for every model with the same shapes,
compared on the sample with counts scaled to the tensor, and said to be sampled."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import mlflow_cc.artifacts as aio
from mlflow_cc.analysis.layer_compare import (
    ArraySource,
    compare_layer_runs,
    compare_layers,
)
from mlflow_cc.artifacts.layers import sample_positions
from mlflow_cc.torch.layers import layer_tables
from tests.llm_fixtures import tiny_llama

SHAPE = (300, 200)


def test_positions_depend_on_shape_and_seed_only() -> None:
    a = sample_positions(SHAPE, 1000, seed=0)
    assert a is not None and a.size == 1000 and (np.diff(a) > 0).all() and a.max() < 60_000
    np.testing.assert_array_equal(a, sample_positions(list(SHAPE), 1000, seed=0))
    assert not np.array_equal(a, sample_positions(SHAPE, 1000, seed=1))
    assert not np.array_equal(a, sample_positions((200, 300), 1000, seed=0))
    assert sample_positions((10, 10), 1000) is None  # small: kept in full


def test_torch_capture_samples_identical_positions_across_models() -> None:
    one, two = tiny_llama(64, seed=0), tiny_llama(64, seed=1)
    s1, w1, sampled1 = layer_tables(one, sample_above=1000, sample_size=256, seed=3)
    _, w2, sampled2 = layer_tables(two, sample_above=1000, sample_size=256, seed=3)
    assert sampled1 == sampled2 and "model.layers.0.mlp.up_proj.weight" in sampled1
    assert "model.layers.0.input_layernorm.weight" not in sampled1  # 32 values: stored in full
    for name, shape in sampled1.items():
        positions = sample_positions(shape, 256, 3)
        full1 = dict(one.named_parameters())[name].detach().numpy().reshape(-1)
        full2 = dict(two.named_parameters())[name].detach().numpy().reshape(-1)
        np.testing.assert_array_equal(w1[name], full1[positions])
        np.testing.assert_array_equal(w2[name], full2[positions])
    # the summary stays exact over the whole tensor
    up = s1.set_index(["module", "tensor"]).loc[("model.layers.0.mlp.up_proj", "weight")]
    assert up["numel"] == 64 * 32 and up["mean"] == pytest.approx(
        float(one.model.layers[0].mlp.up_proj.weight.detach().mean()), abs=1e-6)


def test_sampled_comparison_estimates_the_full_one(sqlite_uri: str) -> None:
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("sampling")
    rng = np.random.default_rng(0)
    base = rng.normal(size=SHAPE).astype(np.float32)
    pruned = np.where(np.abs(base) < np.quantile(np.abs(base), 0.3), 0.0, base).astype(np.float32)
    bias = rng.normal(size=(200,)).astype(np.float32)
    runs = {}
    for key, (weights, above) in {"base": (base, 10_000), "pruned": (pruned, 10_000),
                                  "full": (pruned, None)}.items():
        run_id = client.create_run(exp).info.run_id
        arrays = {"fc.weight": weights, "fc.bias": bias}
        summary = aio.summarize_tensor("fc", "weight", "Linear", weights)
        stored, sampled = aio.sample_weights(arrays, above=above, size=4096, seed=0)
        import pandas as pd
        aio.log_layers(run_id, pd.DataFrame([summary]), stored, sampled=sampled, client=client)
        runs[key] = run_id
    with aio.open_tensors(client, runs["pruned"]) as f:
        assert f.sampled() == {"fc.weight": SHAPE} and f.shape("fc.weight") == (4096,)
    assert list(aio.load_layer_summary(client, runs["pruned"])["stored"]) == ["sample"]

    result = compare_layer_runs(client, runs["base"], [runs["pruned"], runs["full"]])
    exact = compare_layers(ArraySource({"fc.weight": base, "fc.bias": bias}),
                           {"m": ArraySource({"fc.weight": pruned, "fc.bias": bias})})
    rows = result.tensors.set_index(["name", "model"])
    truth = exact.tensors.set_index(["name", "model"]).loc[("fc.weight", "m")]
    for model in (runs["pruned"], runs["full"]):  # a full tensor is read at the sample positions
        row = rows.loc[("fc.weight", model)]
        assert bool(row["sampled"]) and row["status"] == "ok" and row["numel"] == 60_000
        assert list(row["shape"]) == list(SHAPE)
        assert row["zero_model_only_frac"] == pytest.approx(truth["zero_model_only_frac"], abs=0.02)
        assert row["change"] == pytest.approx(truth["change"], rel=0.1)
        assert result.histograms["fc.weight"].counts[model].sum() == pytest.approx(60_000, rel=0.001)
    assert not bool(rows.loc[("fc.bias", runs["pruned"])]["sampled"])
    tree = result.module_tree().set_index(["module", "model"])
    assert tree.loc[("fc", runs["pruned"]), "n_sampled"] == 1
    # module totals weight the sampled tensor by its full size, not by its sample
    assert tree.loc[("fc", runs["pruned"]), "numel"] == 60_200
