"""Causal-LM helpers on a tiny random Llama: batched generation and teacher-forced scoring agree
with one prompt at a time; pruning with and without norms; 2:4; int8 weight-only; sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlflow_cc.errors import OperationError
from mlflow_cc.torch.causal_lm import (
    PromptSet,
    answer_and_score,
    contains_answer,
    generate_answers,
    score_references,
)
from mlflow_cc.torch.effective import effective_tensors, make_pruning_permanent
from mlflow_cc.torch.measure import nonzero_bytes, size_bytes, sparse_bytes
from mlflow_cc.torch.pruning import apply_pruning, prunable_tensors
from mlflow_cc.torch.quantized_linear import (
    WeightOnlyInt8Linear,
    apply_weight_only_int8,
)
from tests.llm_fixtures import tiny_llama, tiny_tokenizer
from tests.torch_fixtures import one_torch_thread  # noqa: F401 - autouse fixture

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "What is 2 plus 2?",
             "How many legs does a spider have?", "What do bees make?"]
ANSWERS = ["Paris", ["William Shakespeare", "Shakespeare"], "4", ["8", "eight"], "honey"]
TIED = ("model.embed_tokens.weight", "lm_head.weight")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _prompts(tok, batch_size: int) -> PromptSet:
    return PromptSet("q", [f"q{i}" for i in range(len(QUESTIONS))], QUESTIONS, ANSWERS, tok,
                     system="Answer in a few words.", max_new_tokens=4, batch_size=batch_size, top_k=3)


def test_batched_generation_and_scoring_match_one_prompt_at_a_time(tok) -> None:
    model = tiny_llama(len(tok))
    batched, single = _prompts(tok, 5), _prompts(tok, 1)
    assert batched.inputs["attention_mask"][:, 0].min() == 0  # prompts differ in length: left padding used
    answers = generate_answers(model, batched)
    assert answers == generate_answers(model, single)
    assert len(set(answers)) > 1  # the random model does not say the same thing to every prompt

    scores, alone = score_references(model, batched), score_references(model, single)
    np.testing.assert_allclose(scores.nll, alone.nll, rtol=1e-4)
    # By hand for "Who wrote Hamlet?": the prompt then the first reference, unpadded.
    prompt = tok(batched.prompt_text(1), add_special_tokens=False)["input_ids"]
    ref = tok("William Shakespeare", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + ref])).logits[0]
    lp = torch.log_softmax(logits, -1)[len(prompt) - 1:-1]
    expected = lp[torch.arange(len(ref)), torch.tensor(ref)]
    np.testing.assert_allclose(scores.token_logprobs[1], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert scores.nll[1] == pytest.approx(float(-expected.mean()), rel=1e-4)
    assert scores.topk_ids[1].shape == (2, 3) and scores.topk_logprobs[1].shape == (2, 3)
    np.testing.assert_array_equal(scores.topk_ids[1][:, 0], lp.argmax(-1).numpy())
    assert (scores.token_logprobs[1] <= scores.topk_logprobs[1][:, 0] + 1e-6).all()


def test_contains_answer_matches_whole_words() -> None:
    assert contains_answer("The capital of France is Paris.", ["Paris"]) == 1.0
    assert contains_answer("Parisian food", ["Paris"]) == 0.0
    assert contains_answer("It was written by Shakespeare", ["William Shakespeare", "Shakespeare"]) == 1.0


def test_prompt_set_refuses_missing_references(tok) -> None:
    with pytest.raises(ValueError, match="reference"):
        PromptSet("q", ["a", "b"], ["x?", "y?"], ["x", []], tok)
    with pytest.raises(ValueError, match="2 instance ids"):
        PromptSet("q", ["a", "b"], ["x?"], ["x"], tok)


def _norm_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().reshape(-1) for m in model.modules() if type(m).__name__ == "LlamaRMSNorm"])


@pytest.mark.parametrize("method", ["local_magnitude", "global_magnitude"])
def test_pruning_with_and_without_norms(tok, method: str) -> None:
    for exclude in ([], ["norm"]):
        model = tiny_llama(len(tok))
        norms_before = _norm_weights(model).clone()
        targets = prunable_tensors(model, exclude_types=exclude, exclude_names=TIED)
        apply_pruning(model, 0.5, method, targets=targets)
        make_pruning_permanent(model)
        norms = _norm_weights(model)
        linear = torch.cat([m.weight.detach().reshape(-1) for m in model.modules() if isinstance(m, nn.Linear)
                            and m is not model.lm_head])
        assert float((linear == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
        assert torch.equal(model.model.embed_tokens.weight, tiny_llama(len(tok)).model.embed_tokens.weight)
        if exclude:
            assert torch.equal(norms, norms_before)
        elif method == "global_magnitude":
            # one threshold for all: norm weights (near 1) are mostly above it
            assert 0 < float((norms == 0).float().mean()) < 0.1
        else:
            assert float((norms == 0).float().mean()) == pytest.approx(0.5, abs=0.05)


def test_two_of_four_pattern(tok) -> None:
    model = tiny_llama(len(tok))
    targets = prunable_tensors(model, exclude_types=["norm", "Embedding"], exclude_names=TIED)
    apply_pruning(model, 0.5, "2:4", targets=targets)
    make_pruning_permanent(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name != "lm_head":
            groups = module.weight.detach().reshape(-1, 4)
            assert ((groups == 0).sum(1) >= 2).all(), name
            # the two kept are the two largest of the group in the unpruned model
    fresh = tiny_llama(len(tok))
    w, kept = fresh.model.layers[0].mlp.up_proj.weight.detach().reshape(-1, 4), \
        model.model.layers[0].mlp.up_proj.weight.detach().reshape(-1, 4)
    top2 = w.abs().topk(2, dim=1).indices.sort(1).values
    assert torch.equal((kept != 0).nonzero()[:, 1].reshape(-1, 2), top2)
    with pytest.raises(OperationError, match="sparsity must be 0.5"):
        apply_pruning(tiny_llama(len(tok)), 0.3, "2:4", targets=targets)
    with pytest.raises(OperationError, match="exclude it"):
        norm_model = tiny_llama(len(tok))
        apply_pruning(norm_model, 0.5, "2:4", targets=prunable_tensors(norm_model, exclude_names=TIED))


def test_int8_weight_only(tok) -> None:
    model = tiny_llama(len(tok))
    ids = _prompts(tok, 5).inputs
    with torch.no_grad():
        ref = model(**ids).logits
    dense_size = size_bytes(model)
    quantized = apply_weight_only_int8(model, exclude_names=["lm_head"])
    assert isinstance(quantized.model.layers[0].self_attn.q_proj, WeightOnlyInt8Linear)
    assert isinstance(quantized.lm_head, nn.Linear)  # excluded (tied to the embedding)
    with torch.no_grad():
        out = quantized(**ids).logits
    assert float((out - ref).abs().mean()) < 0.05 * float(ref.abs().mean())
    rows = {t.name: t for t in effective_tensors(quantized)}
    q = rows["model.layers.0.mlp.down_proj.weight"]
    assert q.quantized and q.dtype == "qint8" and q.stored[""].dtype == torch.int8
    layer = quantized.model.layers[0].mlp.down_proj
    torch.testing.assert_close(q.value, layer.dequantized())
    # Linear weights: 1 byte per value + a scale and a zero point per row, instead of 4 bytes per value
    layers = [m for m in quantized.modules() if isinstance(m, WeightOnlyInt8Linear)]
    linear_values, rows = sum(m.qweight.numel() for m in layers), sum(m.out_features for m in layers)
    header = 300 * len(layers)  # the scale and zero point entries of the safetensors header, at most
    assert 0 <= size_bytes(quantized) - (dense_size - 3 * linear_values + 8 * rows) <= header
    assert nonzero_bytes(quantized) < dense_size


def test_sparse_bytes_falls_with_pruning(tok) -> None:
    model = tiny_llama(len(tok))
    size, dense = size_bytes(model), sparse_bytes(model)
    assert size - 4000 < dense < size  # a dense model stays dense (no file header counted)
    apply_pruning(model, 0.5, "local_magnitude", targets=prunable_tensors(model, exclude_names=TIED))
    pruned_values = sum(p.numel() for n, p in model.named_parameters() if n.endswith("_orig"))
    assert size_bytes(model) == size
    # half of the pruned values saved (4 bytes each), one bit per pruned-tensor element added
    expected = dense - 0.5 * pruned_values * 4 + pruned_values / 8
    assert sparse_bytes(model) == pytest.approx(expected, rel=0.02)


def test_one_pass_answers_and_scores_equal_the_separate_ones(tok) -> None:
    model, prompts = tiny_llama(len(tok)), _prompts(tok, 3)
    answers, scores = answer_and_score(model, prompts)
    assert answers == generate_answers(model, prompts)
    apart = score_references(model, prompts)
    np.testing.assert_allclose(scores.nll, apart.nll, rtol=1e-4)
    for a, b in zip(scores.topk_ids, apart.topk_ids):
        np.testing.assert_array_equal(a, b)
