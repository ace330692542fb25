"""Comparing tensors stored as samples (large weights of language models; see
:func:`mlflow_cc.artifacts.sample_positions`).

A sampled tensor is stored as ``size`` values at positions drawn from its full shape and a
seed, the same for every model with that shape. Two samples with the same (shape, size, seed)
therefore line up element by element; a model that stored the tensor in full is read at the same
positions. The comparison then runs on the sample and its counts (zeros, pruned, changed, the
histogram, the sums behind the change score) are scaled by ``numel / size``: estimates of the
full tensor's, so that modules holding sampled and full tensors add up with the right weights.
Rows of sampled tensors say so (``sampled`` = True).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlflow_cc.artifacts import sample_positions

#: Row counts that scale with the number of elements compared.
_SCALED = ("zeros", "nonfinite", "compared", "zero_both", "zero_model_only", "zero_base_only", "changed")


@dataclass(frozen=True)
class SampleSpec:
    """How a tensor was sampled: its full ``shape``, the ``size`` of the sample and the ``seed``."""

    shape: tuple[int, ...]
    size: int
    seed: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def sample_specs(sources: Mapping[str, object]) -> dict[str, SampleSpec]:
    """Tensor name -> the sample spec of the first source that stored it as a sample.

    Sources without ``sampled()`` (in-memory arrays) or without sampled tensors add nothing.
    """
    specs: dict[str, SampleSpec] = {}
    for src in sources.values():
        listed = getattr(src, "sampled", None)
        if listed is None:
            continue
        shapes = listed()
        if not shapes:
            continue
        seed = src.sample_seed()  # type: ignore[attr-defined]
        for name, shape in shapes.items():
            if name not in specs:
                specs[name] = SampleSpec(tuple(shape), math.prod(src.shape(name)), int(seed))  # type: ignore[attr-defined]
    return specs


class AlignedSource:
    """A tensor source whose sampled tensors line up with ``specs``.

    ``get(name)`` of a tensor in ``specs``: this source's sample when it was sampled the same
    way; its full tensor read at the sample positions when its full shape matches; otherwise
    (another shape, or a sample drawn differently) values that cannot line up, shaped so that
    the comparison reports "shape differs". :meth:`full_shape` gives the shape to report.
    """

    def __init__(self, source: object, specs: Mapping[str, SampleSpec]) -> None:
        self._src = source
        self._specs = specs
        listed = getattr(source, "sampled", None)
        self._own = listed() if listed is not None else {}
        self._seed = source.sample_seed() if self._own else 0  # type: ignore[attr-defined]

    def keys(self) -> Sequence[str]:
        return self._src.keys()  # type: ignore[attr-defined]

    def full_shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape in the model (a sample's full shape)."""
        if name in self._own:
            return tuple(self._own[name])
        return tuple(self._src.shape(name))  # type: ignore[attr-defined]

    def aligned(self, name: str) -> bool:
        """Whether ``get(name)`` returns values at the spec's sample positions."""
        spec = self._specs.get(name)
        if spec is None:
            return False
        if name in self._own:
            return (tuple(self._own[name]) == spec.shape and self._seed == spec.seed
                    and math.prod(self._src.shape(name)) == spec.size)  # type: ignore[attr-defined]
        return tuple(self._src.shape(name)) == spec.shape  # type: ignore[attr-defined]

    def shape(self, name: str) -> tuple[int, ...]:
        spec = self._specs.get(name)
        if spec is None:
            return tuple(self._src.shape(name))  # type: ignore[attr-defined]
        return (spec.size,) if self.aligned(name) else (1, *self.full_shape(name))

    def get(self, name: str) -> np.ndarray:
        values = self._src.get(name)  # type: ignore[attr-defined]
        spec = self._specs.get(name)
        if spec is None:
            return values
        if not self.aligned(name):
            return np.asarray(values).reshape(1, -1)  # never lines up with an aligned sample
        if name in self._own:
            return np.asarray(values).reshape(-1)
        positions = sample_positions(spec.shape, spec.size, spec.seed)
        flat = np.asarray(values).reshape(-1)
        return flat if positions is None else flat[positions]


def scale_rows(rows: list[dict[str, object]], counts: Mapping[str, np.ndarray],
               sources: Mapping[str, object], name: str) -> None:
    """Turn a comparison on ``name``'s samples into estimates of the full tensor, in place.

    Every row gets its full ``shape`` and ``numel``; a row computed on a sample (``n`` values of
    ``numel``) gets ``sampled`` = True and its counts (and histogram ``counts``) times ``numel / n``.
    """
    for row in rows:
        model = str(row["model"])
        src = sources.get(model)
        values = int(row.get("numel") or 0)  # type: ignore[call-overload]
        if not isinstance(src, AlignedSource) or values == 0:
            continue
        shape = src.full_shape(name)
        full = math.prod(shape)
        row["shape"] = list(shape)
        row["numel"] = full
        if values == full:
            continue
        factor = full / values
        row["sampled"] = True
        for key in _SCALED:
            if row.get(key) is not None:
                row[key] = round(float(row[key]) * factor)  # type: ignore[arg-type]
        for key in ("diff_sq", "base_sq"):
            if row.get(key) is not None:
                row[key] = float(row[key]) * factor  # type: ignore[arg-type]
        if model in counts:
            counts[model][...] = np.rint(counts[model] * factor).astype(counts[model].dtype)
