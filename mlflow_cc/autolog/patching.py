"""Installing and removing the patches, and the guard around every patched call.

Functions are patched with MLflow's own ``safe_patch`` under the autologging integration
``mlflow_cc`` (so MLflow's ``disable``/``silent`` configuration and ``revert_patches`` apply);
the one classmethod (``transformers.PreTrainedModel.from_pretrained``), which ``safe_patch`` cannot
wrap, is replaced and restored here. Patches for a library are installed when it is imported
(MLflow's post-import hooks), so enabling autologging imports nothing heavy by itself.

Every patched call goes through :func:`run_operation`: it describes the call (which model, which
operation, which parameters), lets the recorder log the parent, calls the user's function exactly
as given, then logs the result. The user's function is always called, once, with the user's
arguments; its exceptions propagate unchanged; any error of ours is a warning.
"""

from __future__ import annotations

import atexit
import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from mlflow.utils.autologging_utils import (
    autologging_integration,
    autologging_is_disabled,
    safe_patch,
)
from mlflow.utils.import_hooks import register_post_import_hook

from mlflow_cc.autolog.recorder import INTEGRATION, RECORDER, Config, Tracked, warn
from mlflow_cc.track.tracking import ParamValue


@dataclass
class Plan:
    """What a patched call does, as far as lineage goes."""

    model: Any  # the model operated on
    operation: str
    params: dict[str, ParamValue]
    output: Callable[[Any], Any] | None = None  # the call's result -> the model made; None: in place
    coalesce: Hashable | None = None  # see Recorder.after
    tensor: str | None = None
    parent: Callable[[], Tracked] | None = None  # the parent run when it is not ``model``'s (asked after the call)
    observe: Callable[[Any], None] | None = None  # only look at the result: no run is logged


#: ``describe(bound arguments) -> Plan`` (None: the call is not a compression operation).
Describe = Callable[[dict[str, Any]], "Plan | None"]
#: ``(destination module or class, attribute, describe)``.
Patch = tuple[Any, str, Describe]

_local = threading.local()
_hooks: list[Any] = []  # removable torch hooks
_restore: list[Callable[[], None]] = []  # undo of patches made outside safe_patch
_optimizer_models: weakref.WeakKeyDictionary[Any, tuple[int, int, list[weakref.ref[Any]]]] = \
    weakref.WeakKeyDictionary()
_atexit_registered = False


def run_operation(describe: Describe, signature: inspect.Signature | None, label: str,
                  original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``original(*args, **kwargs)`` and log the operation it performs."""
    if getattr(_local, "busy", False) or autologging_is_disabled(INTEGRATION) or _internal_caller():
        return original(*args, **kwargs)
    plan: Plan | None = None
    parent: Tracked | None = None
    _local.busy = True  # calls nested in this one (and in our measuring) are not operations
    try:
        call_args, call_kwargs = args, kwargs
        try:
            bound = signature.bind(*args, **kwargs) if signature is not None else None
            try:
                plan = describe(bound.arguments if bound is not None else {"args": args, **kwargs})
            finally:
                if bound is not None:  # describe may have materialized a one-shot iterator argument
                    call_args, call_kwargs = bound.args, bound.kwargs
            if plan is not None and plan.observe is None and plan.parent is None:
                parent = RECORDER.before(plan.model)  # in place: the model is measured before it changes
        except Exception as exc:  # noqa: BLE001 - never break the user's call
            warn(f"{label}: not recorded ({type(exc).__name__}: {exc})")
            plan = None
        result = original(*call_args, **call_kwargs)
        if plan is not None and plan.observe is not None:
            try:
                plan.observe(result)
            except Exception as exc:  # noqa: BLE001 - never break the user's call
                warn(f"{label}: {type(exc).__name__}: {exc}")
        elif plan is not None:
            try:
                if plan.parent is not None:  # a new model from a source: its parent once the call worked
                    parent = plan.parent()
                out = plan.output(result) if plan.output is not None else plan.model
                if parent is not None:
                    RECORDER.after(parent, plan.model, out, plan.operation, plan.params,
                                   coalesce=plan.coalesce, tensor=plan.tensor)
            except Exception as exc:  # noqa: BLE001 - never break the user's call
                warn(f"{label}: the result was not recorded ({type(exc).__name__}: {exc})")
        return result
    finally:
        _local.busy = False


def _internal_caller() -> bool:
    """True when the patched function is called by mlflow-cc's own helpers (which log explicitly)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if not (name.startswith(("mlflow.", "mlflow_cc.autolog")) or name == "mlflow"):
            return name.startswith("mlflow_cc.")
        frame = frame.f_back
    return False


def safe_patches(patches: list[Patch]) -> None:
    """Patch module functions through MLflow's ``safe_patch``."""
    for destination, attr, describe in patches:
        target = getattr(destination, attr, None)
        if target is None:
            continue
        signature = _signature(target)
        label = f"{getattr(destination, '__name__', destination)}.{attr}"

        def patch(original: Callable[..., Any], *args: Any, _d: Describe = describe,
                  _s: inspect.Signature | None = signature, _l: str = label, **kwargs: Any) -> Any:
            return run_operation(_d, _s, _l, original, args, kwargs)

        safe_patch(INTEGRATION, destination, attr, patch)


def patch_classmethod(cls: type, attr: str, describe: Describe) -> None:
    """Wrap classmethod ``cls.attr`` (undone by :func:`teardown`)."""
    raw = cls.__dict__.get(attr)
    if not isinstance(raw, classmethod) or getattr(raw.__func__, "_mlflow_cc_patched", False):
        return
    func = raw.__func__
    signature = _signature(func)
    label = f"{cls.__name__}.{attr}"

    def wrapper(klass: type, *args: Any, **kwargs: Any) -> Any:
        return run_operation(describe, signature, label, func, (klass, *args), kwargs)

    wrapper._mlflow_cc_patched = True  # type: ignore[attr-defined]
    wrapper.__wrapped__ = func  # type: ignore[attr-defined]
    setattr(cls, attr, classmethod(wrapper))
    _restore.append(lambda: setattr(cls, attr, raw))


def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


# -- optimizer steps ---------------------------------------------------------------------
def _on_step(optimizer: Any, _args: Any, _kwargs: Any) -> None:
    if getattr(_local, "busy", False) or autologging_is_disabled(INTEGRATION):
        return
    try:
        models = _models_trained_by(optimizer)
        if models:
            RECORDER.step(models, optimizer)
    except Exception as exc:  # noqa: BLE001 - never break the user's call
        warn(f"optimizer step not counted ({type(exc).__name__}: {exc})")


def _models_trained_by(optimizer: Any) -> list[Any]:
    """The tracked models whose parameters ``optimizer`` updates (cached per optimizer)."""
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    cached = _optimizer_models.get(optimizer)
    if cached is not None and cached[0] == RECORDER.version and cached[1] == n_params:
        return [m for ref in cached[2] if (m := ref()) is not None]
    ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
    models = [model for model, _ in RECORDER.tracked()
              if any(id(p) in ids for p in model.parameters())]
    _optimizer_models[optimizer] = (RECORDER.version, n_params, [weakref.ref(m) for m in models])
    return models


# -- enable / disable --------------------------------------------------------------------
def _install_torch(_module: Any) -> None:
    if autologging_is_disabled(INTEGRATION):
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from mlflow_cc.autolog import torch_ops

    safe_patches(torch_ops.patches())
    if not _hooks:
        _hooks.append(register_optimizer_step_post_hook(_on_step))


def _install_transformers(_module: Any) -> None:
    if autologging_is_disabled(INTEGRATION):
        return
    from mlflow_cc.autolog import hf_ops

    hf_ops.install_transformers()


def _install_torchao(_module: Any) -> None:
    if autologging_is_disabled(INTEGRATION):
        return
    from mlflow_cc.autolog import hf_ops

    safe_patches(hf_ops.torchao_patches())


def teardown() -> None:
    """Undo what MLflow's ``revert_patches`` does not know about; log pending fine-tuning."""
    RECORDER.flush()
    while _hooks:
        _hooks.pop().remove()
    while _restore:
        _restore.pop()()
    _optimizer_models.clear()


def _at_exit() -> None:
    if not autologging_is_disabled(INTEGRATION):
        RECORDER.flush()


@autologging_integration(INTEGRATION)
def enable(experiment: str | None = None, evaluate: Any = None, capture: Any = None,
           disable: bool = False, silent: bool = False) -> None:
    """MLflow's autologging entry point for ``mlflow_cc`` (runs only when not disabling)."""
    global _atexit_registered
    RECORDER.config = Config(experiment=experiment, evaluate=evaluate, capture=capture)
    register_post_import_hook(_install_torch, "torch")
    register_post_import_hook(_install_transformers, "transformers")
    register_post_import_hook(_install_torchao, "torchao.quantization")
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True
