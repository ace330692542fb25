"""``mlflow_cc.autolog()``: a plain compression script with one added line logs the same tree as the
explicit API, on a sqlite store and a real ``mlflow server``; disabling restores every original;
errors of autologging (a failing ``evaluate``, a bad experiment) never break the script."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch.nn.utils import prune

import mlflow_cc
from mlflow_cc import contract
from mlflow_cc.autolog.recorder import RECORDER, TAG_AUTOLOGGING, TAG_TENSORS
from mlflow_cc.read.reader import ExperimentReader

ROOT = Path(__file__).resolve().parents[1]

#: A training script as people write it; the test adds the one autolog line (and nothing else).
SCRIPT = '''
import torch
from torch import nn
from torch.nn.utils import prune

torch.manual_seed(0)
x, y = torch.randn(96, 12), torch.randint(0, 3, (96,))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 32), nn.Linear(32, 3)

    def forward(self, inputs):
        return self.fc2(torch.relu(self.fc1(inputs)))


def accuracy(model):
    with torch.no_grad():
        return {"accuracy": float((model(x).argmax(1) == y).float().mean())}

{AUTOLOG}
model = Net()
layers = [(model.fc1, "weight"), (model.fc2, "weight")]
prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.4)
prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
model.train()
for epoch in range(3):
    for start in range(0, 96, 32):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[start:start + 32]), y[start:start + 32]).backward()
        optimizer.step()
for module, name in layers:
    prune.remove(module, name)
small = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
print("RESULT", accuracy(small)["accuracy"], sum(int((m.weight == 0).sum()) for m, _ in layers))
'''


def tree(uri: str, experiment: str) -> list[Any]:
    """The forest as nested ``[operation, params, [children...]]`` (roots: operation None)."""
    forest = ExperimentReader(experiment, tracking_uri=uri).forest()

    def node(run_id: str) -> list[Any]:
        n = forest.nodes[run_id]
        return [n.operation, n.op_params, [node(c) for c in sorted(n.children)]]

    return [node(r) for r in forest.roots]


def run_script(tmp_path: Path, uri: str, autolog_line: str) -> str:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.replace("{AUTOLOG}", autolog_line))
    env = {"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "GIT_PYTHON_REFRESH": "quiet"}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    return line


EXPECTED_PRUNE = {"method": "global_unstructured", "pruning_method": "L1Unstructured", "amount": 0.4,
                  "tensors": "weight", "targets": 2}


def explicit_tree(uri: str, experiment: str) -> None:
    """The same steps logged by hand with the explicit API."""
    with mlflow_cc.log_base_model("Net", experiment=experiment, tracking_uri=uri) as base:
        pass
    with mlflow_cc.derive_model(base, "prune", EXPECTED_PRUNE) as p1:
        pass
    with mlflow_cc.derive_model(p1, "prune", EXPECTED_PRUNE) as p2:
        pass
    with mlflow_cc.derive_model(p2, "finetune", {"steps": 9, "optimizer": "sgd", "lr": 0.05}) as ft:
        pass
    with mlflow_cc.derive_model(ft, "quantize", {"method": "dynamic", "bits": 8, "modules": "Linear"}):
        pass


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What the script prints without autolog (it logs nothing: run once for every store)."""
    tmp = tmp_path_factory.mktemp("plain")
    return run_script(tmp, f"sqlite:///{tmp / 'unused.db'}", "")


@pytest.mark.parametrize("where", ["sqlite", "server"])
def test_plain_script_with_one_line_logs_the_explicit_tree(where: str, plain: str, tmp_path: Path,
                                                           request: pytest.FixtureRequest, experiment_name: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if where == "sqlite" else request.getfixturevalue("mlflow_server").url
    logged = run_script(tmp_path, uri, f"import mlflow_cc; mlflow_cc.autolog(experiment={experiment_name!r}, "
                                       "evaluate=accuracy)")
    assert logged == plain  # the script computes exactly what it computes without autolog

    explicit_tree(uri, experiment_name + "-explicit")
    auto = tree(uri, experiment_name)
    assert auto == tree(uri, experiment_name + "-explicit")

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment_name)
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"Net", "prune global unstructured L1Unstructured amount 40%, 2 tensors",
                         "prune global unstructured L1Unstructured amount 40%, 2 tensors (2)",
                         "finetune 9 steps lr 0.05 sgd", "quantize int8 dynamic"}
    by_step = sorted(runs.values(), key=lambda r: int(r.data.tags[contract.TAG_STEP]))
    for run in by_step:
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_AUTOLOGGING] == "mlflow_cc"
        assert {"accuracy", contract.METRIC_SIZE, contract.METRIC_NONZERO, contract.METRIC_SPARSITY} <= set(run.data.metrics)
    sparsity = [r.data.metrics[contract.METRIC_SPARSITY] for r in by_step]
    assert sparsity[0] < 0.01 < sparsity[1] < sparsity[2]  # 40% of the weights, then 40% of the rest
    assert sparsity[3] == pytest.approx(sparsity[2])  # fine-tuning keeps pruned weights at zero
    assert by_step[-1].data.metrics["accuracy"] == pytest.approx(float(plain.split()[1]))


@pytest.fixture
def autologged(sqlite_uri: str) -> Any:
    yield sqlite_uri
    mlflow_cc.autolog(disable=True)
    RECORDER.forget()


def tiny() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def test_disable_restores_the_originals_and_logs_nothing(autologged: str, experiment_name: str) -> None:
    import torch.quantization as tq
    from torch.ao import quantization as aq
    from torch.optim import optimizer as optim_module

    originals = {"global": prune.global_unstructured, "l1": prune.l1_unstructured,
                 "ln": prune.ln_structured, "qd": aq.quantize_dynamic, "tqd": tq.quantize_dynamic}
    hooks = len(optim_module._global_optimizer_post_hooks)
    mlflow_cc.autolog(experiment=experiment_name)
    assert prune.global_unstructured is not originals["global"] and aq.quantize_dynamic is not originals["qd"]
    assert tq.quantize_dynamic is not originals["tqd"]
    assert len(optim_module._global_optimizer_post_hooks) == hooks + 1
    mlflow_cc.autolog(disable=True)
    now = {"global": prune.global_unstructured, "l1": prune.l1_unstructured,
           "ln": prune.ln_structured, "qd": aq.quantize_dynamic, "tqd": tq.quantize_dynamic}
    assert all(now[k] is originals[k] for k in originals)
    assert len(optim_module._global_optimizer_post_hooks) == hooks

    prune.l1_unstructured(tiny()[0], "weight", 0.5)
    torch.ao.quantization.quantize_dynamic(tiny(), {nn.Linear})
    assert mlflow.MlflowClient().get_experiment_by_name(experiment_name) is None  # not even a base


def test_evaluate_error_fails_the_run_not_the_script(autologged: str, experiment_name: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        calls.append(model)
        if len(calls) > 1:
            raise RuntimeError("eval set missing")
        return {"accuracy": 0.5}

    reference = tiny()
    prune.l1_unstructured(reference[0], "weight", 0.5)  # not logged: autolog is off
    mlflow_cc.autolog(experiment=experiment_name, evaluate=evaluate)
    model = mlflow_cc.autolog_name(tiny(), "mlp")
    with caplog.at_level(logging.WARNING, logger="mlflow_cc.autolog"):
        returned = prune.l1_unstructured(model[0], "weight", 0.5)
    assert returned is model[0]
    assert torch.equal(model[0].weight, reference[0].weight)  # the call did what it does without autolog
    assert "eval set missing" in caplog.text
    runs = {r.info.run_name: r for r in mlflow.search_runs(experiment_names=[experiment_name], output_format="list")}
    assert runs["mlp"].info.status == "FINISHED" and runs["mlp"].data.metrics["accuracy"] == 0.5
    (child,) = [r for name, r in runs.items() if name != "mlp"]
    assert child.info.status == "FAILED"
    assert "evaluate failed: RuntimeError: eval set missing" in child.data.tags[contract.TAG_FAILURE]
    assert child.data.tags[contract.TAG_PARENT] == runs["mlp"].info.run_id
    assert child.data.metrics[contract.METRIC_SPARSITY] > 0.1  # measured before evaluate failed


def test_store_error_is_a_warning_and_the_call_still_runs(autologged: str, experiment_name: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    client = mlflow.MlflowClient()
    client.delete_experiment(client.create_experiment(experiment_name))  # log_base_model refuses it
    mlflow_cc.autolog(experiment=experiment_name)
    model = tiny()
    with caplog.at_level(logging.WARNING, logger="mlflow_cc.autolog"):
        prune.random_unstructured(model[2], "weight", amount=0.5)
    assert "not recorded" in caplog.text and "deleted" in caplog.text
    assert int((model[2].weight == 0).sum()) == 8  # pruned all the same


def test_per_layer_calls_are_one_step_and_helpers_are_not_logged_twice(autologged: str, experiment_name: str) -> None:
    from mlflow_cc.torch import prune as cc_prune

    mlflow_cc.autolog(experiment=experiment_name)
    model = tiny()
    prune.l1_unstructured(model[0], "weight", 0.25)
    prune.l1_unstructured(model[2], "weight", 0.25)
    prune.ln_structured(model[0], "weight", amount=0.5, n=2, dim=0)
    prune.remove(model[0], "weight")  # no new model
    forest = ExperimentReader(experiment_name).forest()
    (root,) = forest.roots
    assert forest.nodes[root].name == "Sequential"
    chain = []
    node = forest.nodes[root]
    while node.children:
        node = forest.nodes[node.children[0]]
        chain.append((node.operation, node.op_params, node.tags.get(TAG_TENSORS)))
    assert chain == [("prune", {"method": "l1_unstructured", "amount": 0.25, "tensors": "weight"}, "0.weight,2.weight"),
                     ("prune", {"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0, "tensors": "weight"},
                      "0.weight")]
    assert node.metrics[contract.METRIC_SPARSITY] > 0.3  # re-measured after the coalesced call

    # mlflow-cc's own helpers log explicitly: autolog does not record their inner prune calls
    with mlflow_cc.log_base_model("helper-base", experiment=experiment_name + "-h") as base:
        pass
    cc_prune(tiny(), base, sparsity=0.5)
    runs = mlflow.search_runs(experiment_names=[experiment_name + "-h"], output_format="list")
    assert sorted(r.data.tags.get(contract.TAG_OPERATION, "") for r in runs) == ["", "prune"]
    assert all(TAG_AUTOLOGGING not in r.data.tags for r in runs)


def test_quantization_configs_become_typed_parameters() -> None:
    from transformers import BitsAndBytesConfig

    from mlflow_cc.autolog.hf_ops import quantization_params

    params = quantization_params(BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16,
                                                    bnb_4bit_quant_type="nf4"))
    assert params["method"] == "bitsandbytes" and params["bits"] == 4
    assert params["bnb_4bit_quant_type"] == "nf4" and params["bnb_4bit_compute_dtype"] == "bfloat16"
    assert params["llm_int8_threshold"] == 6.0 and params["load_in_8bit"] is False
    mlflow_cc.track.tracking.validate_operation("quantize", params)  # the contract accepts them all
    nested = quantization_params({"quant_method": "awq", "bits": 4, "group": {"size": 128, "zero": True},
                                  "modules_to_not_convert": ["lm_head", "embed"]})
    assert nested == {"method": "awq", "bits": 4, "group.size": 128, "group.zero": True,
                      "modules_to_not_convert": "lm_head,embed"}
    assert json.loads(json.dumps(nested)) == nested


def test_transformers_quantized_loads_derive_from_the_checkpoint(autologged: str, experiment_name: str,
                                                                 tmp_path: Path) -> None:
    from transformers import AutoModel, BertConfig, BertModel, QuantoConfig
    from transformers.quantizers import (
        HfQuantizer,
        register_quantization_config,
        register_quantizer,
    )
    from transformers.utils.quantization_config import QuantizationConfigMixin

    # A user's own quantization method, through transformers' public registration API (every
    # built-in one needs a GPU or a package this CPU-only venv does not have)
    @register_quantization_config("cc_round")
    class RoundConfig(QuantizationConfigMixin):
        def __init__(self, decimals: int = 2, **_: Any) -> None:
            self.quant_method, self.decimals = "cc_round", decimals

    @register_quantizer("cc_round")
    class RoundQuantizer(HfQuantizer):
        requires_calibration = False

        def validate_environment(self, *args: Any, **kwargs: Any) -> None:
            pass

        def _process_model_before_weight_loading(self, model: Any, **kwargs: Any) -> Any:
            return model

        def _process_model_after_weight_loading(self, model: Any, **kwargs: Any) -> Any:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.round(p, decimals=self.quantization_config.decimals))
            return model

        def is_serializable(self, *args: Any, **kwargs: Any) -> bool:
            return False

        @property
        def is_trainable(self) -> bool:
            return False

    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    for name in ("tiny-a", "tiny-b"):
        BertModel(config).save_pretrained(tmp_path / name)
    mlflow_cc.autolog(experiment=experiment_name)
    full = AutoModel.from_pretrained(tmp_path / "tiny-a")  # a plain load logs nothing
    assert mlflow.MlflowClient().get_experiment_by_name(experiment_name) is None
    rounded = AutoModel.from_pretrained(tmp_path / "tiny-a", quantization_config=RoundConfig(decimals=2))
    with pytest.raises(ImportError, match="optimum-quanto"):  # the user's error, as without autolog
        AutoModel.from_pretrained(tmp_path / "tiny-b", quantization_config=QuantoConfig(weights="int8"))
    AutoModel.from_pretrained(tmp_path / "tiny-b", quantization_config=RoundConfig(decimals=1))

    forest = ExperimentReader(experiment_name).forest()
    roots = {forest.nodes[r].name: forest.nodes[r] for r in forest.roots}
    assert sorted(roots) == ["BertModel", "tiny-b"]  # no run for the failed load
    (child_a,) = [forest.nodes[c] for c in roots["BertModel"].children]
    assert child_a.operation == "quantize"
    assert child_a.op_params == {"checkpoint": str(tmp_path / "tiny-a"), "method": "cc_round", "decimals": 2}
    assert roots["BertModel"].metrics[contract.METRIC_PARAMS] == child_a.metrics[contract.METRIC_PARAMS] > 0
    assert RECORDER.models[rounded].run_id == child_a.run_id and RECORDER.models[full].run_id == roots["BertModel"].run_id
    assert roots["tiny-b"].params == {"checkpoint": str(tmp_path / "tiny-b")} and not roots["tiny-b"].metrics
    (child_b,) = [forest.nodes[c] for c in roots["tiny-b"].children]
    assert child_b.op_params["decimals"] == 1 and child_b.status == "FINISHED"

    model, info = AutoModel.from_pretrained(tmp_path / "tiny-a", quantization_config=RoundConfig(decimals=3),
                                            output_loading_info=True)
    assert isinstance(info, dict)
    third = MlflowClient().get_run(RECORDER.models[model].run_id)
    assert third.data.tags[contract.TAG_PARENT] == roots["BertModel"].run_id and third.info.status == "FINISHED"


def test_fine_tuning_at_the_end_is_logged_when_autologging_ends(autologged: str, experiment_name: str) -> None:
    mlflow_cc.autolog(experiment=experiment_name)
    model = tiny()
    prune.l1_unstructured(model[0], "weight", 0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    other = torch.optim.SGD(tiny().parameters(), lr=0.1)  # trains a model autolog does not follow
    x, y = torch.randn(16, 6), torch.randint(0, 2, (16,))
    for _ in range(4):
        for opt, m in ((optimizer, model), (other, None)):
            opt.zero_grad()
            if m is not None:
                nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
    mlflow_cc.autolog(disable=True)  # the last fine-tuning has no next operation: logged now
    forest = ExperimentReader(experiment_name).forest()
    assert len(forest.roots) == 1
    ops = sorted((n.operation or "", json.dumps(n.op_params, sort_keys=True)) for n in forest.nodes.values())
    assert ops == [("", "{}"), ("finetune", '{"lr": 0.001, "optimizer": "adam", "steps": 4}'),
                   ("prune", '{"amount": 0.5, "method": "l1_unstructured", "tensors": "weight"}')]


def test_importing_mlflow_cc_imports_no_torch_and_autolog_imports_no_transformers() -> None:
    code = ("import sys, mlflow_cc\n"
            "assert 'torch' not in sys.modules, 'import mlflow_cc imported torch'\n"
            "import torch\n"
            "mlflow_cc.autolog(experiment='x')\n"
            "from torch.nn.utils import prune\n"
            "assert prune.l1_unstructured.__name__ == 'l1_unstructured' and hasattr(prune.l1_unstructured, '__wrapped__')\n"
            "assert 'transformers' not in sys.modules, 'autolog imported transformers'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "tests",
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "GIT_PYTHON_REFRESH": "quiet",
                               "MLFLOW_TRACKING_URI": "sqlite:///:memory:"}, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_capture_logs_what_it_logs_for_the_helpers(autologged: str, experiment_name: str) -> None:
    from mlflow_cc.torch import Capture

    capture = Capture(sample_input=torch.randn(4, 6), layers=True, activations=False, latency_runs=2)
    mlflow_cc.autolog(experiment=experiment_name, capture=capture, evaluate=lambda m: {"score": 1.0})
    model = tiny()
    small = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert small is not model
    forest = ExperimentReader(experiment_name).forest()
    (root,) = forest.roots
    (child,) = forest.nodes[root].children
    for run_id in (root, child):
        node = forest.nodes[run_id]
        assert {contract.METRIC_LATENCY, contract.METRIC_SIZE, "score"} <= set(node.metrics)
        paths = [a.path for a in MlflowClient().list_artifacts(run_id, "mlflow_cc/layers")]
        assert contract.ARTIFACT_LAYER_SUMMARY in paths
    assert forest.nodes[child].operation == "quantize" and RECORDER.models[small].run_id == child
