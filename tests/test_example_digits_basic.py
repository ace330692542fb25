"""The first example trains a real CNN and logs a real lineage (plain torch + logging API)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mlflow_cc.read.reader import ExperimentReader

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_basic.py"


def test_digits_basic_example(sqlite_uri: str) -> None:
    spec = importlib.util.spec_from_file_location("digits_basic", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(sqlite_uri, "digits-basic")
    forest = ExperimentReader("digits-basic", sqlite_uri).forest()
    assert len(forest) == 14 and len(forest.roots) == 1 and forest.warnings == []
    base = forest[forest.roots[0]]
    assert base.metrics["accuracy"] > 0.9 and base.metrics["sparsity"] == pytest.approx(0, abs=1e-9)
    ops = sorted(n.label() for n in forest if n.depth == 1)
    assert ops == ["prune(method=global_magnitude, sparsity=0.5)", "prune(method=global_magnitude, sparsity=0.7)",
                   "prune(method=global_magnitude, sparsity=0.9)", "quantize(bits=8, method=dynamic)"]
    for node in forest:
        assert node.status == "FINISHED"
        if node.operation == "prune":
            # Conv/Linear weights are pruned; biases and batch norm are not, so slightly less overall.
            target = node.op_params["sparsity"]
            assert target * 0.95 < node.metrics["sparsity"] <= target
            assert node.metrics["accuracy"] > 0.5
        if node.operation == "quantize":
            parent = forest[node.parent_id]
            assert node.metrics["size_bytes"] < parent.metrics["size_bytes"]
        if node.operation == "finetune":
            assert node.metrics["sparsity"] == pytest.approx(forest[node.parent_id].metrics["sparsity"], abs=1e-3)
