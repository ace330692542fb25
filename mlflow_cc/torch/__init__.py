"""PyTorch helpers (the optional ``torch`` extra; nothing in the core imports this package).

- :mod:`mlflow_cc.torch.measure`: size, parameter and nonzero counts, sparsity, latency.
- :mod:`mlflow_cc.torch.capture`: evaluate a model and log its outputs, layers and activations
  (:mod:`~mlflow_cc.torch.evalset`, :mod:`~mlflow_cc.torch.layers`,
  :mod:`~mlflow_cc.torch.activations`).
- :mod:`mlflow_cc.torch.compress`: pruning, quantization, fine-tuning and calibration helpers
  that log each derived model as a child run of its parent (the in-place operations themselves
  are in :mod:`~mlflow_cc.torch.pruning` and :mod:`~mlflow_cc.torch.operations`).

Works for plain ``nn.Module``s and HuggingFace ``transformers`` models alike.
"""

from __future__ import annotations

from mlflow_cc.torch.capture import Capture, EvalSet
from mlflow_cc.torch.compress import (
    calibrate,
    derive,
    finetune,
    log_base,
    prune,
    quantize,
)
from mlflow_cc.torch.measure import efficiency, log_efficiency
from mlflow_cc.torch.pruning import NORM_TYPES

__all__ = ["NORM_TYPES", "Capture", "EvalSet", "calibrate", "derive", "efficiency", "finetune",
           "log_base", "log_efficiency", "prune", "quantize"]
