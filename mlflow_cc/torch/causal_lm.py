"""Causal language models: prompts with reference answers, batched greedy generation and
teacher-forced scoring of the references.

A :class:`PromptSet` holds the evaluation prompts (the same for every model of an experiment),
their reference answers and the tokenizer. Per batch of ``batch_size`` prompts:

- :func:`generate_answers`: greedy decoding (no sampling), prompts left-padded, at most
  ``max_new_tokens`` new tokens; the answer is the decoded new tokens without special tokens,
  stripped of surrounding whitespace.
- :func:`score_references`: one forward pass over prompt + first reference (left-padded, the
  LM head applied to the reference positions only), giving per reference token its log-probability under the model
  and the model's ``top_k`` most likely tokens with their log-probabilities at that position; the
  reference's mean negative log-likelihood per token is ``reference_nll``.

Prompts are wrapped in the tokenizer's chat template (with ``system`` as the system message)
unless ``chat=False``. :mod:`mlflow_cc.torch.lm_capture` logs all of it on a model's run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlflow_cc.artifacts.answers import normalize_answer
from mlflow_cc.torch.forward import model_device

#: Reference scoring: tokens of a reference beyond this are not scored.
MAX_REFERENCE_TOKENS = 32


@dataclass
class PromptSet:
    """Prompts and reference answers, the same for every model of an experiment.

    ``references``: per prompt one answer or a list of accepted answers (the first is scored
    teacher-forced). ``metadata``: ``instance_id`` plus ``meta_<attribute>`` subgroup columns
    (e.g. ``meta_topic``), stored once per experiment in the dataset run with the prompts as text
    previews. ``inputs`` (built here) are the tokenized prompts, left-padded: what activation
    capture and latency run the model on.
    """

    name: str
    instance_ids: Sequence[str]
    prompts: Sequence[str]
    references: Sequence[str | Sequence[str]]
    tokenizer: Any
    system: str | None = None
    chat: bool = True
    max_new_tokens: int = 16
    batch_size: int = 50
    top_k: int = 5
    metadata: pd.DataFrame | None = None
    class_names: Sequence[str] | None = None
    inputs: dict[str, torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.instance_ids)
        if len(self.prompts) != n or len(self.references) != n:
            raise ValueError(f"prompt set {self.name!r}: {n} instance ids, {len(self.prompts)} prompts and "
                             f"{len(self.references)} references")
        if any(not self.reference_list(i) for i in range(n)):
            raise ValueError(f"prompt set {self.name!r}: every prompt needs a non-empty reference answer")
        if self.tokenizer.pad_token is None:
            raise ValueError(f"prompt set {self.name!r}: the tokenizer has no pad token; set one (e.g. its eos)")
        self.inputs = self.encode_prompts(range(n))

    def __len__(self) -> int:
        return len(self.instance_ids)

    def reference_list(self, i: int) -> list[str]:
        """The accepted answers of prompt ``i``."""
        ref = self.references[i]
        return [ref] if isinstance(ref, str) else [str(r) for r in ref if str(r).strip()]

    def prompt_text(self, i: int) -> str:
        """Prompt ``i`` as the model reads it (the chat template applied)."""
        if not self.chat:
            return str(self.prompts[i])
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": str(self.prompts[i])}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompts(self, indices: Sequence[int] | range) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids`` and ``attention_mask`` of the prompts ``indices``."""
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            enc = self.tokenizer([self.prompt_text(i) for i in indices], return_tensors="pt", padding=True,
                                 add_special_tokens=not self.chat)
        finally:
            self.tokenizer.padding_side = side
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @staticmethod
    def forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of a left-padded batch (positions counted from each prompt's first token)."""
        return model(**batch, position_ids=_positions(batch["attention_mask"])).logits

    def instances_table(self) -> pd.DataFrame:
        """The dataset run's instances: ``instance_id``, ``label`` (none), ``meta_*``."""
        table = pd.DataFrame({"instance_id": [str(i) for i in self.instance_ids], "label": None})
        if self.metadata is not None:
            meta = self.metadata.copy()
            meta["instance_id"] = meta["instance_id"].astype(str)
            table = table.merge(meta.drop(columns=["label"], errors="ignore"), on="instance_id", how="left")
        return table

    @property
    def previews(self) -> pd.DataFrame:
        """The prompts as text previews."""
        return pd.DataFrame({"instance_id": [str(i) for i in self.instance_ids], "kind": "text",
                             "value": [str(p) for p in self.prompts]})

    def batches(self) -> list[range]:
        """Consecutive index ranges of at most ``batch_size`` prompts."""
        return [range(s, min(s + self.batch_size, len(self))) for s in range(0, len(self), self.batch_size)]


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def generate_answers(model: nn.Module, prompts: PromptSet) -> list[str]:
    """Greedy answers to every prompt, batched (see the module docstring)."""
    tok = prompts.tokenizer
    device = model_device(model)
    answers: list[str] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in prompts.batches():
                batch = {k: v.to(device) for k, v in prompts.encode_prompts(idx).items()}
                out = model.generate(**batch, max_new_tokens=prompts.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
                new = out[:, batch["input_ids"].shape[1]:]
                answers.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return answers


@dataclass
class ReferenceScores:
    """Teacher-forced scores of the first reference of each prompt (per instance arrays of T_i tokens)."""

    nll: np.ndarray  # (N,) mean negative log-likelihood per reference token, nats
    token_logprobs: list[np.ndarray]  # (T_i,) log p(reference token)
    topk_ids: list[np.ndarray]  # (T_i, k) the model's top-k token ids at each reference position
    topk_logprobs: list[np.ndarray]  # (T_i, k) their log-probabilities


def score_references(model: nn.Module, prompts: PromptSet) -> ReferenceScores:
    """One teacher-forced forward pass per batch over prompt + first reference.

    Sequences are left-padded (positions counted from each prompt's first token), so every
    reference ends the sequence and the LM head runs only on the last positions (the
    ``logits_to_keep`` of HuggingFace models), not on the prompts.
    """
    tok = prompts.tokenizer
    device = model_device(model)
    pad = int(tok.pad_token_id)
    result = ReferenceScores(np.zeros(len(prompts)), [], [], [])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in prompts.batches():
                seqs, lengths = [], []
                for i in idx:
                    p = tok(prompts.prompt_text(i), add_special_tokens=not prompts.chat)["input_ids"]
                    r = tok(prompts.reference_list(i)[0], add_special_tokens=False)["input_ids"][:MAX_REFERENCE_TOKENS]
                    seqs.append(list(p) + list(r))
                    lengths.append(len(r))
                width = max(len(s) for s in seqs)
                ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
                mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
                keep = max(lengths) + 1
                logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                               logits_to_keep=keep).logits[:, -keep:]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                for row, (i, length) in enumerate(zip(idx, lengths)):
                    # the logits at kept position j predict the token at kept position j + 1
                    lp = logprobs[row, keep - 1 - length:keep - 1]
                    target = ids[row, width - length:]
                    token_lp = lp.gather(1, target[:, None])[:, 0]
                    top = torch.topk(lp, min(prompts.top_k, lp.shape[-1]), dim=-1)
                    result.token_logprobs.append(token_lp.cpu().numpy().astype(np.float32))
                    result.topk_ids.append(top.indices.cpu().numpy().astype(np.int64))
                    result.topk_logprobs.append(top.values.cpu().numpy().astype(np.float32))
                    result.nll[i] = float(-token_lp.mean()) if length else 0.0
    finally:
        model.train(was_training)
    return result


def contains_answer(answer: str, references: Sequence[str]) -> float:
    """1.0 when a normalized reference appears in the normalized answer as whole words, else 0.0
    (a sentence such as "The capital of France is Paris." contains "Paris")."""
    words = f" {normalize_answer(answer)} "
    return float(any(f" {ref} " in words for ref in (normalize_answer(r) for r in references) if ref))
