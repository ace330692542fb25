"""Operations in a practitioner's words: ``prune 90% gradient, norms kept``, ``finetune 2 ep lr 1e-3``.

Pure (no MLflow). Used for the default run name of a derived model (:func:`default_model_name`,
on the write side) and for the short column titles of the comparison
(:mod:`mlflow_cc.analysis.model_labels`), which render only the parameters that tell the
compared models apart.

Known operations (those of :mod:`mlflow_cc.torch`) have their own words; any other operation, or a
parameter a known one does not know, is written ``key=value``, so the name never drops what a
parameter was. Values that are the helpers' defaults (pruning weights only, Adam, ``nn.Linear``,
BatchNorm calibration, gradient pruning's batch count) are left out of a name unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

#: Pruning methods: (words in a name, words in a tight column title).
PRUNE_METHODS = {"global_magnitude": ("magnitude", "mag"), "local_magnitude": ("per-layer magnitude", "layer mag"),
                 "gradient": ("gradient", "grad"), "random": ("random", "random")}
#: Operation names in a tight column title.
SHORT_OPS = {"finetune": "ft", "quantize": "quant", "calibrate": "calib"}

Phrases = tuple[list[str], list[str]]  # (main words joined by spaces, qualifiers after commas)


def default_model_name(operation: str, params: Mapping[str, Any]) -> str:
    """The run name a derived model gets when none is given, in words.

    ``prune 90% gradient, norms kept``, ``finetune 2 ep lr 1e-3``, ``quantize int8 dynamic``,
    ``calibrate 8 batches``; another operation ``distill temperature=2 alpha=0.5``. The write
    side makes it unique within the experiment (``… (2)``).
    """
    return operation_text(operation, params)


def operation_text(operation: str, params: Mapping[str, Any], *, explicit: Collection[str] = (),
                   short: bool = False, with_op: bool = True) -> str:
    """``operation`` and ``params`` in words.

    ``explicit``: keys written even when their value is a default (a column title shows every
    parameter that tells models apart). ``short``: tighter words (``mag``, ``ft``). ``with_op``:
    False leaves the operation's name out when there are words for its parameters (``90% mag``).
    """
    main, quals = phrases(operation, params, explicit=explicit, short=short)
    op = SHORT_OPS.get(operation, operation) if short else operation
    words = " ".join(main)
    if with_op or not (main or quals):
        words = f"{op} {words}".strip()
    if quals:
        words = ", ".join([words, *quals]) if words else ", ".join(quals)
    return words


def phrases(operation: str, params: Mapping[str, Any], *, explicit: Collection[str] = (),
            short: bool = False) -> Phrases:
    """Main words and qualifiers for ``params`` (see :func:`operation_text`)."""
    main: list[str] = []
    quals: list[str] = []
    known = _KNOWN.get(operation, {})
    for key in _ordered(params, list(known)):
        phrase = known.get(key)
        value = params[key]
        text = phrase(value, key in explicit, short) if phrase else _generic(key, value)
        if text is None:
            continue
        (quals if key in _QUALIFIERS.get(operation, ()) else main).append(text)
    return main, quals


def number_text(value: Any) -> str:
    """``0.001`` -> ``1e-3``, ``2.5e-05`` -> ``2.5e-5``, ``0.3`` -> ``0.3``, ``8`` -> ``8``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 0.01 or abs(value) >= 1e5):
        mantissa, _, exp = f"{value:.3g}".partition("e")
        if not exp:
            mantissa, _, exp = f"{value:.2e}".partition("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    return f"{value:g}"


def percent_text(value: Any) -> str:
    """A fraction as a percentage: ``0.9`` -> ``90%``, ``0.995`` -> ``99.5%``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value * 100:.3g}%"


# -- known operations ---------------------------------------------------------------
def _generic(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return key if value else f"no {key}"
    if value is None:
        return f"{key}=none"
    return f"{key}={number_text(value)}"


def _sparsity(v: Any, _explicit: bool, _short: bool) -> str:
    return percent_text(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _generic("sparsity", v)


def _prune_method(v: Any, _explicit: bool, short: bool) -> str:
    words = PRUNE_METHODS.get(str(v))
    return words[1 if short else 0] if words else str(v).replace("_", " ")


def _exclude(v: Any, _explicit: bool, _short: bool) -> str | None:
    if v in (None, "", "none"):
        return None
    parts = ["norms" if p.strip() == "norm" else p.strip() for p in str(v).split(",") if p.strip()]
    return f"{', '.join(parts)} kept"


def _tensors(v: Any, explicit: bool, _short: bool) -> str | None:
    if v in (None, "") or (v == "weight" and not explicit):
        return None
    return f"{str(v).replace(',', '+')} only"


def _default_hidden(default: Any, fmt: Callable[[Any], str]) -> Callable[[Any, bool, bool], str | None]:
    def phrase(v: Any, explicit: bool, _short: bool) -> str | None:
        return None if v == default and not explicit else fmt(v)
    return phrase


def _seed(v: Any, _explicit: bool, _short: bool) -> str:
    return f"seed {v}"


def _epochs(v: Any, _explicit: bool, _short: bool) -> str:
    return f"{v} ep" if isinstance(v, int) and not isinstance(v, bool) else _generic("epochs", v)


def _lr(v: Any, _explicit: bool, _short: bool) -> str:
    return f"lr {number_text(v)}"


def _bits(v: Any, _explicit: bool, _short: bool) -> str:
    return f"int{v}" if isinstance(v, int) and not isinstance(v, bool) else _generic("bits", v)


def _count(unit: str) -> Callable[[Any, bool, bool], str | None]:
    def phrase(v: Any, _explicit: bool, _short: bool) -> str | None:
        return f"{v} {unit}" if isinstance(v, int) and not isinstance(v, bool) else _generic(unit, v)
    return phrase


_KNOWN: dict[str, dict[str, Callable[[Any, bool, bool], str | None]]] = {
    "prune": {"sparsity": _sparsity, "method": _prune_method,
              # torch.nn.utils.prune's own arguments, as mlflow_cc.autolog records them
              "pruning_method": lambda v, _e, _s: str(v),
              "amount": lambda v, _e, _s: f"amount {percent_text(v) if isinstance(v, float) else v}",
              "seed": _seed, "batches": lambda v, explicit, _s: f"{v} batches" if explicit else None,
              "tensors": _tensors, "exclude": _exclude, "targets": _count("tensors")},
    "finetune": {"epochs": _epochs, "steps": _count("steps"), "lr": _lr,
                 "optimizer": _default_hidden("adam", str)},
    "quantize": {"bits": _bits, "method": lambda v, _e, _s: str(v),
                 "modules": _default_hidden("Linear", lambda v: f"{str(v).replace(',', '+')} only")},
    "calibrate": {"batches": _count("batches"), "method": _default_hidden("batchnorm", str)},
}
#: Keys written after a comma (``prune 90% gradient, norms kept``).
_QUALIFIERS = {"prune": ("seed", "tensors", "exclude", "targets")}


def _ordered(params: Mapping[str, Any], order: list[str]) -> list[str]:
    """Known keys in their reading order, then the others in the order given."""
    return [k for k in order if k in params] + [k for k in params if k not in order]
