"""The llm_repair study builder on a reduced configuration: a tiny random Llama (built in code) on
12 of the questions, one sparsity; every model's generation outputs, metrics and sampled layers."""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.analysis.layer_compare import compare_layer_runs
from mlflow_cc.artifacts import (
    load_dataset,
    load_layer_summary,
    load_outputs,
    open_tensors,
)
from mlflow_cc.read.reader import ExperimentReader
from mlflow_cc.studies import llm_repair
from mlflow_cc.studies.llm_data import load_questions
from tests.llm_fixtures import load_tiny
from tests.torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture


def test_question_set_has_topics_and_answers() -> None:
    table = load_questions()
    assert 95 <= len(table) <= 110 and table["instance_id"].is_unique
    assert table["topic"].nunique() >= 5 and table["topic"].value_counts().min() >= 10
    assert all(answers and all(a.strip() for a in answers) for answers in table["answers"])
    few = load_questions(12)
    assert len(few) == 12 and few["topic"].nunique() == table["topic"].nunique()


def test_llm_repair_builds_on_a_tiny_model(sqlite_uri: str, monkeypatch) -> None:
    monkeypatch.setattr(llm_repair, "SAMPLE_ABOVE", 1000)  # the tiny model's matrices get sampled too
    monkeypatch.setattr(llm_repair, "SAMPLE_SIZE", 256)
    results = llm_repair.build(sqlite_uri, experiment="llm-tiny", sparsities=(0.5,), methods=("local_magnitude",),
                               limit=12, max_new_tokens=3, load=load_tiny, name="tiny-llama")
    assert set(results) == {"base", "local_magnitude 50% including norms", "local_magnitude 50% excluding norms",
                            "2:4 semi-structured", "int8 weight-only"}
    forest = ExperimentReader("llm-tiny", sqlite_uri).forest()
    nodes = {n.name: n for n in forest}
    assert len(nodes) == 5 and forest.warnings == [] and all(n.status == "FINISHED" for n in nodes.values())
    client = MlflowClient(sqlite_uri)
    base = nodes["tiny-llama"]
    for node in nodes.values():
        assert {"answer_accuracy", "f1", "reference_nll", "nonzero_bytes", "sparse_bytes"} <= set(node.metrics)
        out = load_outputs(client, node.run_id)
        assert out.kind == "generation" and len(out.generation.generations) == 12
        assert np.isfinite(out.generation.reference_nll).all() and "contains_answer" in out.scores
        summary = load_layer_summary(client, node.run_id)
        assert "sample" in set(summary["stored"])
        with open_tensors(client, node.run_id, "activations") as acts:
            names = acts.keys()
        assert any(n.endswith("input_layernorm") for n in names) and any(n.endswith(".mlp") for n in names)
        assert any(n.endswith("layers.0") for n in names) and any(n.endswith("self_attn") for n in names)
    info = load_dataset(client, client.get_run(base.run_id).data.tags[contract.TAG_DATASET_RUN])
    assert "meta_topic" in info.subgroup_columns
    two_four = next(n for n in nodes.values() if n.op_params.get("method") == "2:4")
    assert two_four.metrics["sparsity"] > 0.2 and two_four.metrics["sparse_bytes"] < base.metrics["sparse_bytes"]
    int8 = next(n for n in nodes.values() if n.op_params.get("method") == "weight_only")
    assert int8.metrics["size_bytes"] < 0.7 * base.metrics["size_bytes"]
    # norms included: the RMSNorm weights are pruned and change most; excluded: untouched
    broken, repaired = nodes["per-layer 50%, norms pruned"], nodes["per-layer 50%, norms kept"]
    assert broken.op_params["exclude"] == ",".join(llm_repair.TIED)
    assert repaired.op_params["exclude"] == ",".join(["norm", *llm_repair.TIED])
    cmp = compare_layer_runs(client, base.run_id, [broken.run_id, repaired.run_id])
    rows = cmp.tensors.set_index(["name", "model"])
    norm = "model.layers.0.input_layernorm.weight"
    assert rows.loc[(norm, broken.run_id), "zero_model_only_frac"] == 0.5
    assert rows.loc[(norm, repaired.run_id), "change"] == 0.0
    sampled = rows.loc[("model.layers.0.mlp.up_proj.weight", broken.run_id)]
    assert bool(sampled["sampled"]) and sampled["numel"] == 64 * 32
