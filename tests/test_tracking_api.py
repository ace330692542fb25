"""The logging API against a real sqlite store: lineage, errors, failure handling."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import mlflow_cc as cc
from mlflow_cc import contract


def test_base_and_derived_runs_carry_lineage(sqlite_uri: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:
        base.log_metrics({"accuracy": 0.9})
        assert mlflow.active_run().info.run_id == base.run_id  # plain mlflow calls land here
        mlflow.log_metric("loss", 0.3)
    with cc.derive_model(base, "prune", {"sparsity": 0.5, "method": "global_magnitude"}) as child:
        child.log_metric("accuracy", 0.85)
    run = MlflowClient().get_run(child.run_id)
    assert run.data.tags[contract.TAG_PARENT] == base.run_id
    assert run.data.tags[contract.TAG_OPERATION] == "prune"
    assert json.loads(run.data.tags[contract.TAG_OPERATION_PARAMS]) == {"sparsity": 0.5,
                                                                         "method": "global_magnitude"}
    assert run.data.tags[contract.TAG_STEP] == "1"
    assert run.data.params["op.sparsity"] == "0.5"
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == base.experiment_id
    assert MlflowClient().get_run(base.run_id).data.metrics == {"accuracy": 0.9, "loss": 0.3}


def test_nested_derivation_in_one_process(sqlite_uri: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:  # noqa: SIM117 - nesting is the point
        with cc.derive_model(base, "quantize", {"bits": 8}) as q:
            with cc.derive_model(q, "finetune", {"epochs": 1}) as ft:
                assert mlflow.active_run().info.run_id == ft.run_id
            assert mlflow.active_run().info.run_id == q.run_id
    client = MlflowClient()
    assert client.get_run(ft.run_id).data.tags[contract.TAG_PARENT] == q.run_id
    assert client.get_run(ft.run_id).data.tags[contract.TAG_STEP] == "2"
    assert {client.get_run(r).info.status for r in (base.run_id, q.run_id, ft.run_id)} == {"FINISHED"}


def test_derive_while_another_run_is_active(sqlite_uri: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:
        pass
    with mlflow.start_run(experiment_id=base.experiment_id, run_name="unrelated") as other:
        with cc.derive_model(base.run_id, "prune", {"sparsity": 0.3}) as child:
            mlflow.log_metric("accuracy", 0.8)
        assert mlflow.active_run().info.run_id == other.info.run_id
    run = MlflowClient().get_run(child.run_id)
    assert run.data.tags[contract.TAG_PARENT] == base.run_id
    assert run.data.metrics == {"accuracy": 0.8}


def test_derive_from_another_process(sqlite_uri: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:
        pass
    code = ("import mlflow_cc as cc, sys\n"
            f"with cc.derive_model({base.run_id!r}, 'prune', {{'sparsity': 0.7}}) as m:\n"
            "    m.log_metric('accuracy', 0.5)\n"
            "print(m.run_id)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**_env(), "MLFLOW_TRACKING_URI": sqlite_uri},
                         capture_output=True, text=True, check=True)
    child_id = out.stdout.strip().splitlines()[-1]
    run = MlflowClient().get_run(child_id)
    assert run.data.tags[contract.TAG_PARENT] == base.run_id


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_extra_inputs_recorded(sqlite_uri: str) -> None:
    with cc.log_base_model("teacher", experiment="e") as teacher:
        pass
    with cc.log_base_model("student", experiment="e") as student:
        pass
    with cc.derive_model(student, "distill", {"temperature": 2.0}, inputs={"teacher": teacher}) as d:
        pass
    tags = MlflowClient().get_run(d.run_id).data.tags
    assert json.loads(tags[contract.TAG_INPUTS]) == [{"run_id": teacher.run_id, "role": "teacher"}]


def test_unknown_parent_is_a_clear_error(sqlite_uri: str) -> None:
    mlflow.set_experiment("e")
    with pytest.raises(cc.LineageError, match="not found"):
        cc.derive_model("0123456789abcdef0123456789abcdef", "prune", {"sparsity": 0.5})
    assert MlflowClient().search_runs([mlflow.get_experiment_by_name("e").experiment_id]) == []


def test_deleted_parent_is_a_clear_error(sqlite_uri: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:
        pass
    MlflowClient().delete_run(base.run_id)
    with pytest.raises(cc.LineageError, match="deleted"):
        cc.derive_model(base.run_id, "prune", {"sparsity": 0.5})


def test_parent_in_another_store_is_refused(sqlite_uri: str, tmp_path) -> None:
    other_uri = f"sqlite:///{tmp_path / 'other.db'}"
    with cc.log_base_model("base", experiment="e", tracking_uri=other_uri) as base:
        pass
    with pytest.raises(cc.LineageError, match="another tracking store"):
        cc.derive_model(base, "prune", {"sparsity": 0.5}, tracking_uri=sqlite_uri)
    with pytest.raises(cc.LineageError, match="not found"):  # a bare id from the other store
        cc.derive_model(base.run_id, "prune", {"sparsity": 0.5}, tracking_uri=sqlite_uri)


@pytest.mark.parametrize("operation, params, message", [
    ("", {}, "invalid operation name"),
    ("prune<script>", {}, "invalid operation name"),
    ("x" * 80, {}, "invalid operation name"),
    ("prune", {"bad key!": 1}, "invalid parameter name"),
    ("prune", {"sparsity": [0.5]}, "must be a str, int, float, bool or None"),
    ("prune", {"sparsity": float("nan")}, "not finite"),
    ("prune", {"name": "x"}, "reserved"),
])
def test_invalid_operation_is_refused_before_writing(sqlite_uri: str, operation: str, params: dict,
                                                     message: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:
        pass
    with pytest.raises(cc.OperationError, match=message):
        cc.derive_model(base, operation, params)
    assert len(MlflowClient().search_runs([base.experiment_id])) == 1


def test_failure_marks_run_failed_with_reason(sqlite_uri: str) -> None:
    with cc.log_base_model("base", experiment="e") as base:
        pass
    with pytest.raises(RuntimeError, match="out of memory"), \
            cc.derive_model(base, "prune", {"sparsity": 0.9}) as child:
        child.log_metric("accuracy", 0.1)
        raise RuntimeError("out of memory")
    run = MlflowClient().get_run(child.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[contract.TAG_FAILURE] == "RuntimeError: out of memory"
    assert mlflow.active_run() is None


def test_metric_info_is_recorded_per_experiment(sqlite_uri: str) -> None:
    cc.set_metric_info("accuracy", direction="max", format=".1%", primary=True, experiment="e")
    cc.set_metric_info("loss", direction="min", experiment="e")
    tags = mlflow.get_experiment_by_name("e").tags
    assert json.loads(tags["mlflow_cc.metric.accuracy"]) == {"direction": "max", "format": ".1%",
                                                             "primary": True, "unit": ""}
    with pytest.raises(ValueError, match="direction"):
        cc.set_metric_info("x", direction="up", experiment="e")


def test_app_link_in_description(sqlite_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_CC_APP_URL", "http://127.0.0.1:8050/")
    with cc.log_base_model("base", experiment="e") as base:
        pass
    note = MlflowClient().get_run(base.run_id).data.tags["mlflow.note.content"]
    assert f"select={base.run_id}" in note and note.startswith("[Open this model in mlflow-cc](http://127.0.0.1:8050/?")


def test_default_names_are_words_unique_in_the_experiment(sqlite_uri: str) -> None:
    with cc.log_base_model("cnn", experiment="e") as base:
        pass
    names = []
    for _ in range(3):
        with cc.derive_model(base, "finetune", {"epochs": 2, "lr": 0.001, "optimizer": "adam"}) as ft:
            names.append(ft.name)
    with cc.derive_model(base, "prune", {"method": "gradient", "sparsity": 0.9, "exclude": "norm"}) as pruned:
        pass
    with cc.derive_model(base, "prune", {"sparsity": 0.9}, name="it's mine") as mine:
        pass
    with cc.derive_model(base, "prune", {"sparsity": 0.9}, name="it's mine") as again:
        pass
    assert names == ["finetune 2 ep lr 1e-3", "finetune 2 ep lr 1e-3 (2)", "finetune 2 ep lr 1e-3 (3)"]
    assert pruned.name == "prune 90% gradient, norms kept"
    assert (mine.name, again.name) == ("it's mine", "it's mine")  # the user's names are kept as given
    client = MlflowClient()
    assert client.get_run(ft.run_id).info.run_name == "finetune 2 ep lr 1e-3 (3)"
    with cc.log_base_model("cnn", experiment="other") as other:
        pass
    with cc.derive_model(other, "finetune", {"epochs": 2, "lr": 0.001, "optimizer": "adam"}) as elsewhere:
        pass
    assert elsewhere.name == "finetune 2 ep lr 1e-3"  # unique within its own experiment
