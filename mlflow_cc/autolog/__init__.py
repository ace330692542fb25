"""One-line autologging of compression steps: ``mlflow_cc.autolog()``.

After ``mlflow_cc.autolog(experiment="digits")`` a training script's own compression calls
(``torch.nn.utils.prune.*``, ``quantize_dynamic``, ``torchao.quantization.quantize_``,
``from_pretrained(..., quantization_config=...)``) each log a derived-model run with the right
parent, operation and parameters; optimizer steps in between log a ``finetune`` model. See
:mod:`~mlflow_cc.autolog.torch_ops` and :mod:`~mlflow_cc.autolog.hf_ops` for what is patched,
:mod:`~mlflow_cc.autolog.recorder` for how models are followed.

Importing this package imports neither torch nor transformers: patches are installed when those
libraries are imported (or at once if they already are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["autolog", "autolog_name"]


def autolog(experiment: str | None = None, evaluate: Callable[[Any], Mapping[str, float]] | None = None,
            capture: Any | None = None, disable: bool = False, silent: bool = False) -> None:
    """Record compression calls on models as derived-model runs, from now on.

    ``experiment``: where base models go (a name, created if missing; default MLflow's active
    experiment); derived models go under their parent. ``evaluate(model) -> {metric: value}`` is
    called on each new model (the base too) and its metrics logged; size, nonzero count and
    sparsity are always measured, or everything a :class:`mlflow_cc.torch.Capture` logs when
    ``capture`` is given. ``disable=True`` removes every patch and hook (pending fine-tuning is
    logged first); ``silent=True`` hides autologging's warnings. An error of autologging (a store
    down, ``evaluate`` raising) never reaches the user's call: it is a warning, and the run
    concerned is marked FAILED with the reason.
    """
    from mlflow_cc.autolog import patching

    patching.teardown()
    patching.enable(experiment=experiment, evaluate=evaluate, capture=capture, disable=disable, silent=silent)


def autolog_name(model: Any, name: str) -> Any:
    """Name the base run of ``model`` (default: its class name); returns ``model``."""
    from mlflow_cc.autolog.recorder import RECORDER

    RECORDER.name(model, name)
    return model
