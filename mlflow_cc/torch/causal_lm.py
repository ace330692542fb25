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

Prompts are wrapped in the tokenizer's chat template (with ``system`` as the system message), or
in ``template``, a format string with ``{prompt}`` that spells out every special token (shorter
prompts are cheaper: the prompt tokens are most of the work). Batches group prompts of similar
token length, so little compute goes to padding. :mod:`mlflow_cc.torch.lm_capture` logs all of it on a model's run.
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
    template: str | None = None
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
        if self.template is not None:
            return self.template.format(prompt=self.prompts[i])
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": str(self.prompts[i])}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompts(self, indices: Sequence[int] | range) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids`` and ``attention_mask`` of the prompts ``indices``."""
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            enc = self.tokenizer([self.prompt_text(i) for i in indices], return_tensors="pt", padding=True,
                                 add_special_tokens=False)
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

    def batches(self) -> list[list[int]]:
        """Prompt indices in batches of at most ``batch_size``, prompts of similar token length together."""
        lengths = self.inputs["attention_mask"].sum(1).tolist()
        order = sorted(range(len(self)), key=lambda i: (lengths[i], i))
        return [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def generate_answers(model: nn.Module, prompts: PromptSet) -> list[str]:
    """Greedy answers to every prompt, batched (see the module docstring)."""
    tok = prompts.tokenizer
    device = model_device(model)
    answers = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in prompts.batches():
                batch = {k: v.to(device) for k, v in prompts.encode_prompts(idx).items()}
                out = model.generate(**batch, max_new_tokens=prompts.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
                new = out[:, batch["input_ids"].shape[1]:]
                for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True)):
                    answers[i] = text.strip()
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

    @classmethod
    def empty(cls, n: int) -> ReferenceScores:
        """Scores for ``n`` prompts with no tokens yet (filled batch by batch)."""
        return cls(np.zeros(n), [np.zeros(0, np.float32)] * n, [np.zeros((0, 0), np.int64)] * n,
                   [np.zeros((0, 0), np.float32)] * n)


def score_references(model: nn.Module, prompts: PromptSet) -> ReferenceScores:
    """One teacher-forced forward pass per batch over prompt + first reference.

    Sequences are left-padded (positions counted from each prompt's first token), so every
    reference ends the sequence and the LM head runs only on the last positions (the
    ``logits_to_keep`` of HuggingFace models), not on the prompts.
    """
    tok = prompts.tokenizer
    device = model_device(model)
    pad = int(tok.pad_token_id)
    n = len(prompts)
    result = ReferenceScores.empty(n)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in prompts.batches():
                seqs, lengths = [], []
                for i in idx:
                    p = tok(prompts.prompt_text(i), add_special_tokens=False)["input_ids"]
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
                    _store(result, i, lp, ids[row, width - length:], prompts.top_k)
    finally:
        model.train(was_training)
    return result


def answer_and_score(model: nn.Module, prompts: PromptSet) -> tuple[list[str], ReferenceScores]:
    """:func:`generate_answers` and :func:`score_references` with one prompt pass per batch.

    Per batch the prompts are left-padded and their first references appended, right-padded; one
    forward pass scores the references, and its key/value cache, cut back to the prompts, starts the
    greedy generation (which then reads only the last prompt token again). Same answers and scores
    as the two functions apart, in about two thirds of the time.
    """
    tok = prompts.tokenizer
    device = model_device(model)
    pad = int(tok.pad_token_id)
    n = len(prompts)
    answers = [""] * n
    result = ReferenceScores.empty(n)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in prompts.batches():
                enc = {k: v.to(device) for k, v in prompts.encode_prompts(idx).items()}
                width = enc["input_ids"].shape[1]
                refs = [tok(prompts.reference_list(i)[0], add_special_tokens=False)["input_ids"][:MAX_REFERENCE_TOKENS]
                        for i in idx]
                longest = max(len(r) for r in refs)
                ref_ids = torch.tensor([r + [pad] * (longest - len(r)) for r in refs], device=device,
                                       dtype=enc["input_ids"].dtype)
                ref_mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in refs], device=device,
                                        dtype=enc["attention_mask"].dtype)
                ids = torch.cat([enc["input_ids"], ref_ids], 1)
                mask = torch.cat([enc["attention_mask"], ref_mask], 1)
                out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                            logits_to_keep=longest + 1, use_cache=True)
                logprobs = torch.log_softmax(out.logits[:, -(longest + 1):].float(), dim=-1)
                for row, (i, ref) in enumerate(zip(idx, refs)):
                    lp = logprobs[row, :len(ref)]  # kept position j predicts reference token j
                    _store(result, i, lp, ref_ids[row, :len(ref)], prompts.top_k)
                cache = out.cache
                cache.crop(-(longest + 1))  # keep the first width - 1 positions: all prompt tokens but the last
                gen = model.generate(**enc, cache=cache, max_new_tokens=prompts.max_new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id, temperature=None, top_p=None,
                                     top_k=None)
                for i, text in zip(idx, tok.batch_decode(gen[:, width:], skip_special_tokens=True)):
                    answers[i] = text.strip()
    finally:
        model.train(was_training)
    return answers, result


def _store(result: ReferenceScores, i: int, lp: torch.Tensor, target: torch.Tensor, top_k: int) -> None:
    """Record instance ``i``'s reference scores from its log-probabilities ``lp`` (T, vocab)."""
    token_lp = lp.gather(1, target[:, None])[:, 0]
    top = torch.topk(lp, min(top_k, lp.shape[-1]), dim=-1)
    result.token_logprobs[i] = token_lp.cpu().numpy().astype(np.float32)
    result.topk_ids[i] = top.indices.cpu().numpy().astype(np.int64)
    result.topk_logprobs[i] = top.values.cpu().numpy().astype(np.float32)
    result.nll[i] = float(-token_lp.mean()) if len(token_lp) else 0.0


def contains_answer(answer: str, references: Sequence[str]) -> float:
    """1.0 when a normalized reference appears in the normalized answer as whole words, else 0.0
    (a sentence such as "The capital of France is Paris." contains "Paris")."""
    words = f" {normalize_answer(answer)} "
    return float(any(f" {ref} " in words for ref in (normalize_answer(r) for r in references) if ref))
