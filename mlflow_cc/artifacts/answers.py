"""Answer matching for generated text: normalization, exact match and token F1 (max over references).

Normalization (the usual one for extractive question answering): lower case, drop punctuation
(Unicode category P*), drop the articles "a", "an", "the", collapse whitespace. Exact match is 1
when the normalized answer equals a normalized reference; token F1 is the harmonic mean of
precision and recall of the normalized answer's words against a reference's (multiset overlap).
Both take the best over the instance's references.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in str(text).lower() if not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(answer: str, references: Sequence[str]) -> float:
    """1.0 when the normalized answer equals any normalized reference, else 0.0."""
    norm = normalize_answer(answer)
    return float(any(norm == normalize_answer(r) for r in references))


def token_f1(answer: str, references: Sequence[str]) -> float:
    """The best token F1 of the normalized answer against the references, in [0, 1]."""
    words = normalize_answer(answer).split()
    return max((_f1(words, normalize_answer(r).split()) for r in references), default=0.0)
