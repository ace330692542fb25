"""Compression helpers on real models (a small CNN, and all-MiniLM-L6-v2 from transformers):
each operation, its logged lineage, exclusions, failures, and the user's model left unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

from mlflow_cc import contract
from mlflow_cc.artifacts import load_layer_summary, load_outputs, open_tensors
from mlflow_cc.errors import OperationError
from mlflow_cc.studies.sentence_data import embed, load_minilm, tokenize
from mlflow_cc.torch import (
    Capture,
    EvalSet,
    calibrate,
    finetune,
    log_base,
    prune,
    quantize,
)
from mlflow_cc.torch.effective import effective_tensors, has_pruning
from mlflow_cc.torch.pruning import prunable_tensors


class TinyNet(nn.Module):
    """Conv + BatchNorm + LayerNorm + Linear: every kind of layer the helpers treat specially."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 16, 32)
        self.norm = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = nn.functional.max_pool2d(h, 2).flatten(1)
        return self.fc2(torch.relu(self.norm(self.fc1(h))))


def tiny() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    y = (x.mean((1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 1).long()
    return TinyNet().eval(), [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def zero_fraction(model: nn.Module, names: list[str]) -> float:
    values = {t.name: t.value for t in effective_tensors(model)}
    total = sum(values[n].numel() for n in names)
    return sum(int((values[n] == 0).sum()) for n in names) / total


@pytest.mark.parametrize("method", ["global_magnitude", "local_magnitude", "gradient", "random"])
def test_prune_methods(sqlite_uri: str, method: str) -> None:
    model, batches = tiny()
    before = state(model)
    base = log_base(model, "tiny", experiment="prune")
    pruned, run = prune(model, base, sparsity=0.6, method=method, batches=batches, exclude_types=["norm"])
    targets = [name for name, _, _ in prunable_tensors(pruned, exclude_types=["norm"])]
    assert zero_fraction(pruned, targets) == pytest.approx(0.6, abs=0.01)
    if method in ("local_magnitude", "random"):  # the same fraction of every tensor
        for name in targets:
            assert zero_fraction(pruned, [name]) == pytest.approx(0.6, abs=0.1)
    # exclusions untouched, the user's model untouched
    assert torch.equal(pruned.bn.weight, model.bn.weight) and torch.equal(pruned.norm.weight, model.norm.weight)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not has_pruning(model)
    # magnitude pruning removes the smallest weights
    if method == "global_magnitude":
        kept = torch.cat([t.value.flatten() for t in effective_tensors(pruned) if t.name in targets])
        original = torch.cat([dict(model.named_parameters())[n].detach().flatten() for n in targets])
        threshold = kept[kept != 0].abs().min()
        assert int((original.abs() < threshold).sum()) == int((kept == 0).sum())
    logged = MlflowClient(sqlite_uri).get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags[contract.TAG_OPERATION] == "prune"
    params = json.loads(logged.data.tags[contract.TAG_OPERATION_PARAMS])
    assert params["method"] == method and params["sparsity"] == 0.6 and params["exclude"] == "norm"
    assert logged.data.tags[contract.TAG_PARENT] == base.run_id


def test_exclude_by_type_name_and_pattern() -> None:
    model, _ = tiny()
    names = lambda **kw: [n for n, _, _ in prunable_tensors(model, **kw)]
    assert "bn.weight" in names() and "norm.weight" in names()
    assert names(exclude_types=[nn.BatchNorm2d]) == [n for n in names() if not n.startswith("bn.")]
    assert names(exclude_types=["LayerNorm"]) == [n for n in names() if not n.startswith("norm.")]
    assert names(exclude_names=["*.bias", "fc2.*"]) == ["conv.weight", "bn.weight", "fc1.weight", "norm.weight"]
    assert names(tensors=["weight"], exclude_types=["norm"]) == ["conv.weight", "fc1.weight", "fc2.weight"]


def test_failure_marks_the_run_failed(sqlite_uri: str) -> None:
    model, batches = tiny()
    base = log_base(model, "tiny", experiment="failures")
    client = MlflowClient(sqlite_uri)
    with pytest.raises(OperationError, match="needs calibration batches"):
        prune(model, base, sparsity=0.5, method="gradient")
    with pytest.raises(OperationError, match="no BatchNorm"):
        calibrate(nn.Sequential(nn.Linear(3, 3)), base, batches=batches)
    failed = client.search_runs([base.experiment_id], "attributes.status = 'FAILED'")
    reasons = sorted(r.data.tags[contract.TAG_FAILURE] for r in failed)
    assert len(reasons) == 2 and "OperationError" in reasons[0]


def test_prune_finetune_calibrate_quantize_chain(sqlite_uri: str) -> None:
    model, batches = tiny()
    base = log_base(model, "tiny", experiment="chain")
    pruned, p_run = prune(model, base, sparsity=0.7, exclude_types=["norm"], tensors=["weight"])
    pruned_zeros = {t.name: t.value == 0 for t in effective_tensors(pruned)}
    tuned, f_run = finetune(pruned, p_run, batches=batches, epochs=3, lr=1e-2)
    for t in effective_tensors(tuned):
        if t.name in ("conv.weight", "fc1.weight"):
            assert bool((t.value[pruned_zeros[t.name]] == 0).all())  # pruned weights stay zero
            assert not torch.equal(t.value, {x.name: x.value for x in effective_tensors(pruned)}[t.name])
    calibrated, c_run = calibrate(tuned, f_run, batches=batches)
    assert not torch.equal(calibrated.bn.running_mean, tuned.bn.running_mean)
    expected_mean = torch.stack([tuned.conv(x).mean((0, 2, 3)) for x, _ in batches]).mean(0)
    torch.testing.assert_close(calibrated.bn.running_mean, expected_mean.detach(), rtol=1e-4, atol=1e-5)
    quantized, q_run = quantize(calibrated, c_run)
    assert type(quantized.fc1).__name__ == "Linear" and "quantized" in type(quantized.fc1).__module__
    x = batches[0][0]
    with torch.no_grad():
        torch.testing.assert_close(quantized(x), calibrated(x), atol=0.1, rtol=0.1)
    steps = [MlflowClient(sqlite_uri).get_run(r.run_id).data.tags[contract.TAG_STEP] for r in (p_run, f_run, c_run, q_run)]
    assert steps == ["1", "2", "3", "4"]
    # the pruned parent is still pruned (masks intact) and the quantized model kept its zeros
    assert has_pruning(pruned)
    fc1 = {t.name: t.value for t in effective_tensors(quantized)}["fc1.weight"]
    assert float((fc1 == 0).float().mean()) >= 0.69
    with pytest.raises(OperationError, match="fine-tune before quantizing"):
        finetune(quantized, q_run, batches=batches)


@pytest.fixture(scope="module")
def minilm() -> tuple[object, nn.Module, dict[str, torch.Tensor]]:
    tokenizer, model = load_minilm()
    texts = ["The striker scored twice.", "Add salt to the soup.", "The server crashed again.",
             "Snow is expected tonight.", "The bank raised rates.", "She won the match."]
    return tokenizer, model, tokenize(tokenizer, texts)


def test_transformers_model_prune_quantize_round_trip(sqlite_uri: str, minilm: tuple) -> None:
    _, model, inputs = minilm
    ids = [f"s{i}" for i in range(len(inputs["input_ids"]))]
    with torch.no_grad():
        base_emb = embed(model, inputs)
    eval_set = EvalSet("sentences", ids, inputs, labels=[0, 1, 2, 3, 4, 0],
                       forward=lambda m, b: {"logits": embed(m, b) @ base_emb[:5].T, "embedding": embed(m, b)},
                       scores=lambda out: {"cosine_to_base": (out["embedding"] * base_emb.numpy()).sum(1)})
    capture = Capture(eval_set, sample_input=inputs, progress=False, latency_runs=1, activation_instances=2,
                      weights_exclude=["embeddings.*"])
    before = model.encoder.layer[0].attention.self.query.weight.detach().clone()
    base = log_base(model, "minilm", experiment="minilm", capture=capture)
    pruned, p_run = prune(model, base, sparsity=0.3, exclude_types=["norm"], capture=capture)
    _quantized, q_run = quantize(pruned, p_run, capture=capture)
    assert torch.equal(model.encoder.layer[0].attention.self.query.weight, before) and not has_pruning(model)
    client = MlflowClient(sqlite_uri)
    # LayerNorm excluded: its weights are stored unchanged; Linear weights pruned, then int8
    with open_tensors(client, p_run.run_id) as p_w, open_tensors(client, q_run.run_id) as q_w:
        ln = "encoder.layer.0.output.LayerNorm.weight"
        np.testing.assert_array_equal(p_w.get(ln), model.get_parameter(ln).detach().numpy())
        query = "encoder.layer.0.attention.self.query.weight"
        assert 0.1 < float((p_w.get(query) == 0).mean()) < 0.6
        step = float(np.abs(p_w.get(query)).max()) / 127
        np.testing.assert_allclose(q_w.get(query), p_w.get(query), atol=step)
        assert "embeddings.word_embeddings.weight" not in p_w
    summary = load_layer_summary(client, q_run.run_id).set_index(["module", "tensor"])
    assert summary.loc[("encoder.layer.0.attention.self.query", "weight"), "dtype"] == "qint8"
    assert summary.loc[("embeddings.word_embeddings", "weight"), "numel"] == 30522 * 384
    for run, low in ((base, 0.999), (p_run, 0.5), (q_run, 0.5)):
        outputs = load_outputs(client, run.run_id)
        assert outputs.logits.shape == (6, 5) and outputs.scores["cosine_to_base"].min() > low
    metrics = client.get_run(p_run.run_id).data.metrics
    assert metrics[contract.METRIC_PARAMS] == sum(p.numel() for p in model.parameters())
    assert 0.25 < metrics[contract.METRIC_SPARSITY] < 0.31
    # Linear weights (10.8M) go from 4 bytes to 1; the embeddings (12M) stay float32
    saved = metrics[contract.METRIC_SIZE] - client.get_run(q_run.run_id).data.metrics[contract.METRIC_SIZE]
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert 3 * linear * 0.99 < saved < 3 * linear
