"""Evaluate a causal language model on a :class:`~mlflow_cc.torch.causal_lm.PromptSet` and log
what comparison needs: generation outputs, answer metrics, efficiency, layers and activations.

::

    prompts = PromptSet("questions", ids, questions, answers, tokenizer, max_new_tokens=12)
    capture = LMCapture(prompts)
    base = log_base(model, "smollm2", experiment="llm", capture=capture)
    pruned, run = prune(model, base, sparsity=0.3, method="local_magnitude", capture=capture)

Per model it logs the metrics ``answer_accuracy`` (fraction of answers containing a reference as
whole words, see :func:`~mlflow_cc.torch.causal_lm.contains_answer`), ``exact_match`` and ``f1``
(means over prompts, normalized as in :mod:`mlflow_cc.artifacts.answers`), ``reference_nll``
(mean over prompts of the per-token negative log-likelihood of the reference, nats),
the efficiency metrics of :func:`~mlflow_cc.torch.measure.efficiency` plus ``sparse_bytes``;
the outputs (kind "generation": answers, references, per-instance scores and the teacher-forced
top-k log-probabilities) and the layers (large weights sampled; activations of the decoder
layers, attention and MLP blocks and every leaf module, norms included, on
``activation_instances`` prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from mlflow_cc import artifacts
from mlflow_cc.artifacts.answers import exact_match, token_f1
from mlflow_cc.torch.capture import Capture
from mlflow_cc.torch.causal_lm import (
    PromptSet,
    answer_and_score,
    contains_answer,
)
from mlflow_cc.torch.effective import folded
from mlflow_cc.torch.layers import log_layers
from mlflow_cc.torch.measure import efficiency, sparse_bytes
from mlflow_cc.track.tracking import ModelRun

#: Metric names logged on every model (besides the efficiency metrics).
ANSWER_METRICS = ("answer_accuracy", "exact_match", "f1", "reference_nll")


@dataclass
class LMCapture(Capture):
    """A :class:`~mlflow_cc.torch.capture.Capture` for causal LMs; ``eval_set`` is a :class:`PromptSet`.

    ``sample_input`` defaults to the first prompt (latency of one forward pass over it; one
    untimed pass first). ``activation_instances`` defaults to 4 prompts (the LM head's output
    alone is prompts x tokens x vocabulary values before sampling).
    """

    activation_instances: int = 4
    latency_runs: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.eval_set, PromptSet):
            raise TypeError("LMCapture needs a PromptSet as eval_set")
        if self.sample_input is None:
            first = self.eval_set.encode_prompts([0])  # unpadded
            self.sample_input = {k: v for k, v in first.items()}

    def log(self, model_run: ModelRun, model: nn.Module) -> dict[str, float]:
        """Measure, generate, score and log everything requested on ``model_run``; returns the metrics."""
        prompts = self.eval_set
        assert isinstance(prompts, PromptSet)
        model = folded(model)
        metrics = efficiency(model, self.sample_input, warmup=1, runs=self.latency_runs)
        metrics["sparse_bytes"] = float(sparse_bytes(model))
        answers, scored = answer_and_score(model, prompts)
        refs = [prompts.reference_list(i) for i in range(len(prompts))]
        contains = np.array([contains_answer(a, r) for a, r in zip(answers, refs)])
        metrics.update(answer_accuracy=float(contains.mean()),
                       exact_match=float(np.mean([exact_match(a, r) for a, r in zip(answers, refs)])),
                       f1=float(np.mean([token_f1(a, r) for a, r in zip(answers, refs)])),
                       reference_nll=float(scored.nll.mean()))
        if self.metrics is not None:
            metrics.update({k: float(v) for k, v in self.metrics(model, None).items()})
        model_run.log_metrics(metrics)
        if self.outputs:
            artifacts.log_generation_outputs(
                model_run.run_id, [str(i) for i in prompts.instance_ids], answers, refs,
                prompts=[str(p) for p in prompts.prompts], scores={"contains_answer": contains},
                reference_nll=scored.nll, reference_token_logprobs=scored.token_logprobs,
                topk_token_ids=scored.topk_ids, topk_logprobs=scored.topk_logprobs, dataset=prompts.name,
                dataset_run_id=self.dataset_run(model_run), client=model_run.client)
        if self.layers:
            log_layers(model_run, model, eval_set=prompts, activations=self.activations,  # type: ignore[arg-type]
                       activation_instances=self.activation_instances, activation_cap=self.activation_cap,
                       seed=self.seed, weights_exclude=self.weights_exclude, sample_above=self.sample_above,
                       sample_size=self.sample_size)
        if self.log_model:
            from mlflow_cc.torch.logged_model import log_pytorch_model

            log_pytorch_model(model_run, model)
        return metrics
