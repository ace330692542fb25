"""Behaviours grid rows of generation (and regression, embedding) outputs: each model's answer with
the words that differ from the base's answer marked, the prompt, the reference.

Answers travel as lists of ``[word, changed]`` pairs and are drawn by the ``CmpAnswer`` renderer
of ``assets/generation.js`` as text nodes in spans: user text is never markup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any

import pandas as pd

#: Words of one answer sent to the browser (the rest is cut, with an ellipsis word).
MAX_WORDS = 80
#: Row height (px) of instance rows that show answers under the bars.
ANSWER_ROW_HEIGHT = 58
_KEY = re.compile(r"[^\w]+")
#: Kinds whose instance rows show each model's answer (or value) under its bar.
ANSWER_KINDS = ("generation", "regression")


def instance_row_height(kind: str) -> int:
    """Pixels of an instance row: taller where answers show under the bars."""
    return ANSWER_ROW_HEIGHT if kind in ANSWER_KINDS else 34


def word_diff(base: str | None, text: str | None) -> list[list[Any]]:
    """``text`` as ``[word, 1 if it is not in the base's answer (in order) else 0]`` pairs.

    Words match when equal after lower-casing and dropping punctuation; the alignment is a
    longest-matching-blocks diff of the two word sequences (:class:`difflib.SequenceMatcher`).
    """
    words = str(text or "").split()
    cut = len(words) > MAX_WORDS
    words = words[:MAX_WORDS]
    if base is None:
        out = [[w, 0] for w in words]
    else:
        keys = [_KEY.sub("", w.lower()) or w for w in words]
        base_keys = [_KEY.sub("", w.lower()) or w for w in str(base).split()]
        out = [[w, 1] for w in words]
        for block in SequenceMatcher(None, base_keys, keys, autojunk=False).get_matching_blocks():
            for j in range(block.b, block.b + block.size):
                out[j][1] = 0
    return out + ([["…", 0]] if cut else [])


def add_answers(payload: list[dict[str, Any]], rows: pd.DataFrame, n_models: int) -> None:
    """Add ``a<i>`` (marked words of model i's answer vs the base's) and the prompt as a text preview."""
    have = [f"t{i}" for i in range(n_models) if f"t{i}" in rows.columns]
    if not have:
        return
    texts = rows[have].to_numpy(object)
    prompts = rows["prompt"].to_numpy(object) if "prompt" in rows.columns else None
    for r, row in enumerate(payload):
        base = texts[r, 0] if have[0] == "t0" else None
        for c, col in enumerate(have):
            text = texts[r, c]
            if text is None or (isinstance(text, float) and math.isnan(text)):
                continue
            row["a" + col[1:]] = word_diff(None if col == "t0" else base, str(text))
        if prompts is not None and prompts[r] is not None and "pv" not in row:
            row["pk"], row["pv"] = "text", str(prompts[r])


def adapt_columns(columns: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Instance columns for answers: the preview is the prompt, the label is the reference (or
    target), and model cells draw their bar above the answer (``CmpAnswer``)."""
    for col in columns:
        cid = col.get("colId", "")
        if cid == "preview" and kind == "generation":
            col.update(headerName="prompt", width=240)
        elif cid == "name":
            col.update(headerName={"generation": "reference", "regression": "target"}.get(kind, "instance"),
                       width=150 if kind == "generation" else 110, wrapText=False)
        elif cid.startswith("v") and cid[1:].isdigit() and kind in ANSWER_KINDS:
            col["cellRenderer"] = "CmpAnswer"
            col["cellRendererParams"] = dict(col.get("cellRendererParams") or {}, answer=f"a{cid[1:]}")
            col["minWidth"] = max(int(col.get("minWidth") or 0), 190)
    return columns


def status_note(kind: str, rows: str, subgroups: Sequence[str]) -> str:
    """What the user should know about the rows of this kind ("" when nothing)."""
    if kind != "classification" and rows == "classes":
        return f"{kind} outputs have no classes: choose subgroup or instance rows"
    return ""


def changes_title(kind: str) -> str:
    """The heading of the most-frequent-changes panel."""
    what = "answer" if kind == "generation" else "prediction"
    return f"Most frequent {what} changes (base → model)"
