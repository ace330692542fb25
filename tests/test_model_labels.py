"""Model names in words (the write side's default) and distinct comparison titles (analysis/model_labels)."""

from __future__ import annotations

import random

import pytest

from mlflow_cc.analysis.model_labels import MAX_CHARS, distinct_labels
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest
from mlflow_cc.read.op_words import default_model_name, number_text
from testing.synthetic import random_forest

NORM = {"exclude": "norm", "tensors": "weight"}


@pytest.mark.parametrize(("operation", "params", "old", "new"), [
    # the digits study
    ("prune", {"method": "gradient", "sparsity": 0.9, "batches": 8, **NORM},
     "prune(8, norm, gradient, 0.9, weight)", "prune 90% gradient, norms kept"),
    ("prune", {"method": "global_magnitude", "sparsity": 0.95, **NORM},
     "prune(norm, global_magnitude, 0.95, weight)", "prune 95% magnitude, norms kept"),
    ("prune", {"method": "local_magnitude", "sparsity": 0.7, **NORM},
     "prune(norm, local_magnitude, 0.7, weight)", "prune 70% per-layer magnitude, norms kept"),
    ("prune", {"method": "random", "sparsity": 0.5, "seed": 0, **NORM},
     "prune(norm, random, 0, 0.5, weight)", "prune 50% random, seed 0, norms kept"),
    ("finetune", {"epochs": 2, "lr": 0.001, "optimizer": "adam"}, "finetune(2, 0.001, adam)", "finetune 2 ep lr 1e-3"),
    ("quantize", {"method": "dynamic", "bits": 8, "modules": "Linear"}, "quantize(8, dynamic, Linear)",
     "quantize int8 dynamic"),
    ("calibrate", {"method": "batchnorm", "batches": 8}, "calibrate(8, batchnorm)", "calibrate 8 batches"),
    # the transformer study: LayerNorm pruned (nothing excluded) or kept
    ("prune", {"method": "local_magnitude", "sparsity": 0.3, "exclude": "none"},
     "prune(none, local_magnitude, 0.3)", "prune 30% per-layer magnitude"),
    # the bias study
    ("prune", {"method": "global_magnitude", "sparsity": 0.99, **NORM},
     "prune(norm, global_magnitude, 0.99, weight)", "prune 99% magnitude, norms kept"),
    # not the helpers' defaults, and operations of the user's own
    ("finetune", {"epochs": 1, "lr": 2.5e-5, "optimizer": "sgd"}, "", "finetune 1 ep lr 2.5e-5 sgd"),
    ("prune", {"method": "global_magnitude", "sparsity": 0.5, "exclude": "norm,embeddings.*",
               "tensors": "weight,bias"}, "", "prune 50% magnitude, weight+bias only, norms, embeddings.* kept"),
    ("distill", {"temperature": 2.0, "alpha": 0.5, "hard": False}, "", "distill temperature=2 alpha=0.5 no hard"),
    ("prune", {"sparsity": 0.25}, "prune(0.25)", "prune 25%"),
    ("quantize", {}, "quantize", "quantize"),
])
def test_default_names_say_what_the_operation_did(operation: str, params: dict, old: str, new: str) -> None:
    assert default_model_name(operation, params) == new


def test_number_text() -> None:
    assert [number_text(v) for v in (0.001, 2.5e-5, 0.3, 8, 1e-4, 0.01, 3e5)] == \
        ["1e-3", "2.5e-5", "0.3", "8", "1e-4", "0.01", "3e5"]


def _forest(spec: list[tuple[str, str | None, str | None, dict]]) -> Forest:
    """(run id, parent, operation, params); names as the write side makes them."""
    nodes = [ModelNode(rid, default_model_name(op, params) if op else rid, "1", declared_parent_id=parent,
                       operation=op, op_params=params, start_time=i) for i, (rid, parent, op, params) in enumerate(spec)]
    return build_forest(nodes)


def _digits() -> Forest:
    spec: list[tuple[str, str | None, str | None, dict]] = [("cnn", None, None, {})]
    for method in ("global_magnitude", "gradient"):
        for s in (0.5, 0.7, 0.9, 0.95):
            extra = {"batches": 8} if method == "gradient" else {}
            spec.append((f"{method}{s}", "cnn", "prune", {"method": method, "sparsity": s, **extra, **NORM}))
    for p in ("global_magnitude0.9", "global_magnitude0.95", "gradient0.9", "gradient0.95"):
        spec.append((f"{p}-ft", p, "finetune", {"epochs": 2, "lr": 0.001, "optimizer": "adam"}))
    spec.append(("global_magnitude0.95-ft-q", "global_magnitude0.95-ft", "quantize",
                 {"method": "dynamic", "bits": 8, "modules": "Linear"}))
    for p in ("global_magnitude0.5", "global_magnitude0.9"):
        spec.append((f"{p}-q", p, "quantize", {"method": "dynamic", "bits": 8, "modules": "Linear"}))
        spec.append((f"{p}-cal", p, "calibrate", {"method": "batchnorm", "batches": 8}))
        spec.append((f"{p}-cal-q", f"{p}-cal", "quantize", {"method": "dynamic", "bits": 8, "modules": "Linear"}))
    return _forest(spec)


def test_pruned_models_and_their_finetuned_children_read_apart() -> None:
    """The paper's first task: the old titles were four `prune(norm, global_magnitude,…` and `finetune(2, 0.001, adam)`."""
    forest = _digits()
    sel = ["global_magnitude0.9", "global_magnitude0.9-ft", "global_magnitude0.95", "global_magnitude0.95-ft",
           "gradient0.9", "gradient0.9-ft", "gradient0.95", "gradient0.95-ft"]
    assert distinct_labels(forest, sel, "cnn") == {
        "cnn": "cnn",
        "global_magnitude0.9": "prune 90% magnitude", "global_magnitude0.9-ft": "90% magnitude → finetune",
        "global_magnitude0.95": "prune 95% magnitude", "global_magnitude0.95-ft": "95% magnitude → finetune",
        "gradient0.9": "prune 90% gradient", "gradient0.9-ft": "90% gradient → finetune",
        "gradient0.95": "prune 95% gradient", "gradient0.95-ft": "95% gradient → finetune"}
    # One method: only the sparsity tells the prunes apart, and the path reads in full.
    sel = ["global_magnitude0.9", "global_magnitude0.9-ft", "global_magnitude0.95", "global_magnitude0.95-ft"]
    assert distinct_labels(forest, sel, "cnn") == {
        "cnn": "cnn", "global_magnitude0.9": "prune 90%", "global_magnitude0.9-ft": "prune 90% → finetune",
        "global_magnitude0.95": "prune 95%", "global_magnitude0.95-ft": "prune 95% → finetune"}


def test_titles_are_relative_to_the_common_ancestor() -> None:
    forest = _digits()
    # A pruned model as the base: its children are titled by what was done after it.
    labels = distinct_labels(forest, ["global_magnitude0.9-ft", "global_magnitude0.9-q", "global_magnitude0.9-cal",
                                      "global_magnitude0.9-cal-q"], "global_magnitude0.9")
    assert labels == {"global_magnitude0.9": "90% magnitude, norms kept",  # its own step, tightened to fit
                      "global_magnitude0.9-ft": "finetune", "global_magnitude0.9-q": "quantize",
                      "global_magnitude0.9-cal": "calibrate", "global_magnitude0.9-cal-q": "calibrate → quantize"}
    # The whole study: long paths get tighter words, and stay apart.
    everything = distinct_labels(forest, list(forest.nodes), "cnn")
    assert everything["global_magnitude0.5-cal-q"] == "50% mag → calib → quant"
    assert everything["global_magnitude0.95-ft-q"] == "95% mag → ft → quant"
    assert everything["global_magnitude0.5-q"] == "50% magnitude → quantize"
    assert len(set(everything.values())) == len(everything)


def test_transformer_study_shape() -> None:
    spec: list[tuple[str, str | None, str | None, dict]] = [("minilm", None, None, {})]
    for method in ("global_magnitude", "local_magnitude"):
        for s in (0.1, 0.3, 0.5):
            for exclude in ("none", "norm"):
                spec.append((f"{method}{s}{exclude}", "minilm", "prune",
                             {"method": method, "sparsity": s, "exclude": exclude}))
    forest = _forest(spec)
    labels = distinct_labels(forest, list(forest.nodes), "minilm")
    assert labels["local_magnitude0.3none"] == "30% per-layer magnitude"
    assert labels["local_magnitude0.3norm"] == "30% layer mag, norms kept"
    assert labels["global_magnitude0.1norm"] == "10% magnitude, norms kept"
    assert labels["global_magnitude0.1none"] == "prune 10% magnitude"
    assert len(set(labels.values())) == len(labels)
    # Only the exclusion differs: the operation stays.
    two = distinct_labels(forest, ["local_magnitude0.3none", "local_magnitude0.3norm"], "minilm")
    assert two == {"minilm": "minilm", "local_magnitude0.3none": "prune", "local_magnitude0.3norm": "prune, norms kept"}


def test_same_recipe_twice_gets_run_names_or_numbers() -> None:
    nodes = [ModelNode("b", "base", "1"), *(ModelNode(f"q{i}", name, "1", declared_parent_id="b", operation="quantize",
                                                      op_params={"bits": 8}, start_time=i)
                                            for i, name in enumerate(["int8 try", "int8 retry"]))]
    forest = build_forest(nodes)
    assert distinct_labels(forest, ["q0", "q1"], "b") == {"b": "base", "q0": "int8 try", "q1": "int8 retry"}
    nodes[2].name = "int8 try"  # equal run names: numbered in tree order
    forest = build_forest(nodes)
    assert distinct_labels(forest, ["q0", "q1"], "b") == {"b": "base", "q0": "quantize", "q1": "quantize #2"}


def test_several_roots_name_their_base_model() -> None:
    forest = _forest([("cnn-a", None, None, {}), ("cnn-b", None, None, {}),
                      ("pa", "cnn-a", "prune", {"sparsity": 0.5}), ("pb", "cnn-b", "prune", {"sparsity": 0.5})])
    assert distinct_labels(forest, ["pa", "pb"], "pa") == {"pa": "cnn-a → prune", "pb": "cnn-b → prune"}


@pytest.mark.parametrize("seed", range(6))
def test_random_selections_are_pairwise_distinct_and_short(seed: int) -> None:
    forest = random_forest(400, max_depth=8, roots=3, seed=seed)
    rng = random.Random(seed)
    ids = list(forest.nodes)
    for _ in range(60):
        sel = rng.sample(ids, rng.randint(1, 14))
        base = rng.choice(sel)
        labels = distinct_labels(forest, sel, base)
        assert set(labels) == set(sel) | {base}
        assert len(set(labels.values())) == len(labels), labels
        assert all(0 < len(t) <= MAX_CHARS for t in labels.values()), labels
