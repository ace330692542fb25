"""A tiny causal LM for tests: a word-level tokenizer over the question set's words with a
ChatML template (as SmolLM2's), and a randomly initialised 2-layer Llama. Built in code in well
under a second: no GGUF, no download."""

from __future__ import annotations

import re
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mlflow_cc.studies.llm_data import load_questions

SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer() -> Any:
    """Word-level tokenizer: every word and punctuation mark of the questions, answers and prompts."""
    table = load_questions()
    text = " ".join([*table["question"], *[" ".join(a) for a in table["answers"]],
                     "system user assistant Answer in a few words ."])
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)))
    vocab = {w: i for i, w in enumerate([*SPECIAL, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(r"<\|im_(start|end)\|>", "isolated"),
                                                 pre_tokenizers.Whitespace()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   unk_token="<unk>", additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 2) -> LlamaForCausalLM:
    """A random Llama (hidden 32, MLP 64, 2 heads, tied embeddings, RMSNorm weights random too so
    that magnitude pruning has something to choose)."""
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         tie_word_embeddings=True, pad_token_id=0, eos_token_id=2, bos_token_id=1,
                         initializer_range=0.5)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    model.generation_config.pad_token_id = 0
    return model


def load_tiny() -> tuple[Any, LlamaForCausalLM]:
    """(tokenizer, model) like :func:`mlflow_cc.studies.llm_data.load_smollm2`, tiny and random."""
    tok = tiny_tokenizer()
    return tok, tiny_llama(len(tok))
