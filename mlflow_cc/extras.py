"""Which ``pip install "mlflow-cc[...]"`` extra a feature needs, said clearly when it is missing.

The core (logging, reader, analysis) needs no extra; the app needs ``app`` (Dash, Plotly,
AG Grid), the PyTorch helpers ``torch``, the case studies ``studies``, gunicorn serving ``team``.
"""

from __future__ import annotations

import importlib.util

from mlflow_cc.errors import MlflowCCError

#: extra -> the modules it provides that the feature imports.
EXTRAS: dict[str, tuple[str, ...]] = {
    "app": ("dash", "dash_ag_grid", "plotly"),
    "torch": ("torch",),
    "studies": ("torch", "sklearn", "transformers"),
    "team": ("gunicorn",),
}


class MissingExtraError(MlflowCCError):
    """A feature's optional packages are not installed."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra to install when ``feature`` cannot run."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(f"{feature} needs the '{extra}' extra (missing: {', '.join(absent)}): "
                                f"pip install \"mlflow-cc[{extra}]\"")
