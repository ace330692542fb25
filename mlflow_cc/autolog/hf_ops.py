"""What autologging patches in ``transformers`` and ``torchao``, and how configs become parameters.

- ``transformers.PreTrainedModel.from_pretrained(path, quantization_config=...)`` (every
  ``AutoModel*`` class goes through it): operation ``quantize``, a child of the checkpoint's base
  run. The base is the model loaded earlier in full precision from the same ``path`` in this
  process, if any (logged on first sight), else a run named after the checkpoint with
  ``checkpoint=path`` and no measurements (the full-precision model was never loaded).
  A plain ``from_pretrained`` (no quantization config) logs nothing; it only remembers the path.
- ``torchao.quantization.quantize_(model, config)`` (in place): operation ``quantize``,
  ``method`` the config's class name.

Config objects (``BitsAndBytesConfig`` and the other ``transformers`` quantization configs,
torchao's config dataclasses, plain dicts) become typed parameters: scalars as they are, dtypes
and enums by name, nested values flattened to ``a.b`` keys, sequences comma-joined.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from mlflow_cc import contract
from mlflow_cc.autolog.patching import Patch, Plan, patch_classmethod
from mlflow_cc.autolog.recorder import RECORDER, Tracked
from mlflow_cc.track.tracking import ParamValue

#: checkpoint path -> the model loaded from it in full precision (weak: it may be dropped).
_loaded: dict[str, weakref.ref[Any]] = {}
#: checkpoint path -> its base run when the model was never loaded in full precision.
_checkpoint_bases: dict[str, Tracked] = {}


def config_params(config: Any, prefix: str = "") -> dict[str, ParamValue]:
    """Typed operation parameters from a quantization config object or dict."""
    if isinstance(config, Mapping):
        items = dict(config)
    elif hasattr(config, "to_dict") and callable(config.to_dict):
        items = dict(config.to_dict())
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    else:
        items = {k: v for k, v in vars(config).items()} if hasattr(config, "__dict__") else {}
    out: dict[str, ParamValue] = {}
    for key, value in items.items():
        key = str(key)
        if key.startswith("_"):
            continue
        name = f"{prefix}{key}" if key != "name" else f"{prefix}name_"
        if not contract.PARAM_NAME_RE.match(name):
            continue
        if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)
                                          and dataclasses.fields(value)):
            if len(prefix.split(".")) < 3:
                out.update(config_params(value, prefix=name + "."))
            continue
        out[name] = _typed(value)
    return out


def _typed(value: Any) -> ParamValue:
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, (str, int, float)) else value.name
    if value is None or isinstance(value, (bool, int, str)):
        return value[:500] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if type(value).__name__ == "dtype":  # torch.dtype
        return str(value).removeprefix("torch.")
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(_typed(v)) for v in value)[:500]
    if dataclasses.is_dataclass(value):
        return type(value).__name__  # e.g. torchao's PerRow()
    return str(value)[:500]


def quantization_params(config: Any) -> dict[str, ParamValue]:
    """``method`` and ``bits`` first (when the config says them), then the config's fields."""
    params = config_params(config)
    method = params.pop("quant_method", None)
    out: dict[str, ParamValue] = {"method": method if isinstance(method, str) else type(config).__name__}
    if params.get("load_in_4bit") is True:
        out["bits"] = 4
    elif params.get("load_in_8bit") is True:
        out["bits"] = 8
    elif isinstance(params.get("bits"), int):
        out["bits"] = params.pop("bits")
    out.update(params)
    return out


# -- transformers -------------------------------------------------------------------------
def install_transformers() -> None:
    from transformers import PreTrainedModel

    patch_classmethod(PreTrainedModel, "from_pretrained", _from_pretrained)


def _from_pretrained(args: dict[str, Any]) -> Plan | None:
    path = args.get("pretrained_model_name_or_path")
    config = args.get("quantization_config", args.get("kwargs", {}).get("quantization_config"))
    key = os.fspath(path) if path is not None else None
    if config is None:
        return None if key is None else Plan(model=None, operation="", params={},
                                             observe=lambda result: _remember(key, result))
    params = quantization_params(config)
    if key is not None:
        params = {"checkpoint": key[:500], **params}

    def parent() -> Tracked:
        loaded = _loaded.get(key) if key is not None else None
        model = loaded() if loaded is not None else None
        if model is not None:
            state = RECORDER.models.get(model)
            return RECORDER.before(model) if state is None else state
        if key not in _checkpoint_bases:
            name = os.path.basename(str(key).rstrip("/")) or "checkpoint"
            _checkpoint_bases[str(key)] = RECORDER.log_checkpoint_base(name, {"checkpoint": str(key)[:500]})
        return _checkpoint_bases[str(key)]

    return Plan(model=None, operation="quantize", params=params, output=_model_of, parent=parent)


def _model_of(result: Any) -> Any:
    """The model ``from_pretrained`` returned (``output_loading_info=True`` adds a dict after it)."""
    return result[0] if isinstance(result, tuple) else result


def _remember(key: str, result: Any) -> None:
    try:
        _loaded[key] = weakref.ref(_model_of(result))
    except TypeError:  # not weak-referenceable: it cannot be a later quantized load's parent
        pass


# -- torchao ---------------------------------------------------------------------------------
def torchao_patches() -> list[Patch]:
    out: list[Patch] = []
    for name in ("torchao.quantization", "torchao.quantization.quant_api"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "quantize_"):
            out.append((module, "quantize_", _torchao_quantize))
    return out


def _torchao_quantize(args: dict[str, Any]) -> Plan:
    config = args.get("config")
    params = quantization_params(config) if config is not None else {"method": "torchao"}
    if args.get("filter_fn") is not None:
        params["filter_fn"] = getattr(args["filter_fn"], "__name__", "custom")
    return Plan(model=args["model"], operation="quantize", params=params)
