"""What a selection explanation is made of: the public :class:`Variable` and :class:`Explanation`, the variable costs, and value helpers (typing, ordering, labels).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

COST_PARAM = 1


COST_BASE = 1


COST_PRESENCE = 2


COST_OP_TYPE = 5


COST_SEQUENCE = 6


#: Offer one presence candidate per operation name only when there are this few names.
MAX_PRESENCE_NAMES = 4


#: Largest number of values of a variable made by merging two small ones.
MAX_MERGED_LEVELS = 6


#: Longest chain the sequence candidate considers (bounds memory on very deep chains).
MAX_CHAIN = 64


#: The synthetic operation from the synthetic root to a root model.
_BASE_OP = "\x00base"


_BASE_NAME = "base model"


_MISSING = ("\x00missing",)  # a parameter one operation has and another lacks


_NONE_LABEL = "none"


@dataclass(frozen=True)
class Variable:
    """One way the selected models differ.

    ``levels`` are the values met, in display order (numbers numerically, ``False`` before
    ``True``, ``None`` = "not applicable" first, sequences by length); ``labels`` are their
    display texts, one per level.
    """

    name: str  # e.g. "prune.sparsity", "calibrate", "operation after prune", "base model", "recipe"
    kind: str  # "param" | "presence" | "op_type" | "sequence" | "base" | "merged"
    cost: int
    levels: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()

    def label(self, value: Any) -> str:
        """Display text of ``value`` (one of :attr:`levels`)."""
        for level, text in zip(self.levels, self.labels):
            if level == value and type(level) is type(value):
                return text
        return _plain_label(value)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "cost": self.cost,
                "levels": list(self.levels), "labels": list(self.labels)}


@dataclass
class Explanation:
    """How the selected models differ, ready for a grouped bar chart."""

    variables: list[Variable]  # after simplification, single-valued dropped; walk order
    values: dict[str, dict[str, Any]]  # run_id -> {variable name: value}, every selected model
    x: Variable | None  # chart x axis (None when nothing varies)
    color: Variable | None  # second variable as bar colour, or None
    comparable: bool  # False when more than two variables remain -> Refine Comparison
    refine_options: dict[str, list[Any]]  # variable name -> its levels (only when not comparable)
    #: What all selected models share, e.g. {"prune.method": "global_magnitude"} (chart subtitle).
    constants: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (values are bool, int, float, str or None)."""
        return {"variables": [v.to_dict() for v in self.variables], "values": self.values,
                "x": self.x.name if self.x else None, "color": self.color.name if self.color else None,
                "comparable": self.comparable, "refine_options": self.refine_options,
                "constants": self.constants}


def _typed(v: Any) -> tuple[str, Any]:
    """Tell True from 1 and False from 0 (Python sets and dicts mix them up)."""
    return (type(v).__name__ if isinstance(v, bool) else "", v)


def _distinct(values: list[Any]) -> set[Any]:
    return {_typed(v) for v in values}


def _member(value: Any, options: Iterable[Any]) -> bool:
    return any(_typed(value) == _typed(o) for o in options)


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, (int, float)):
        return (2, v)
    if isinstance(v, str):
        return (3, v)
    return (4, repr(v))


def _plain_label(v: Any) -> str:
    if v is None:
        return _NONE_LABEL
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):  # identifiers read as words: "global_magnitude" -> "global magnitude"
        return v.replace("_", " ") if v.isidentifier() else v
    return str(v)


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p) or _NONE_LABEL


def _hashable(v: Any) -> Any:
    """Parameter values as comparable scalars; lists and dicts become their JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, default=str)
