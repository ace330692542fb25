"""Layer comparison: how each model's tensors differ from the base's, one tensor at a time.

Pure numpy, streaming. For every tensor name (weights by parameter name, or sampled
activations by module name) the base's tensor and each model's are loaded in turn,
so peak memory is a few copies of one tensor, never whole state dicts. Per tensor
and model it reports:

* the **sparsity split**: fractions of elements zero in both, zero in the model only
  (pruned), zero in the base only (revived);
* a **histogram** of the model's values with bins shared by the base and every
  compared model (the range spans all of them, so values outside the base's range
  are counted, never dropped), each bin split by the element's relative change to
  the base, ``|w - w_base| / (|w_base| + EPS)``, into :data:`CHANGE_BUCKETS`:

  ============  =================================================
  unchanged     relative change < 1 %
  small         1 % .. < 10 %
  medium        10 % .. < 50 %
  large         >= 50 % (also: base zero, model not)
  zeroed        base not zero, model exactly zero (pruned)
  not compared  no element-wise base (shape differs, base lacks it)
  ============  =================================================

* a **change** score for sorting: ``||w - w_base||_2 / ||w_base||_2`` (normalized L2
  distance; 0 = identical, 1 = as far as the base is from zero), and the fraction of
  elements changed by 1 % or more.

Tensors whose shapes differ (structured pruning, other architectures) or that one
side lacks get a status and a histogram without element-wise change; they never
raise. Large tensors stored as samples are compared on the sample and their counts
scaled to the full tensor (:mod:`~mlflow_cc.analysis.layer_samples`); their rows say
``sampled``. :meth:`LayerComparison.module_tree` sums the counts up the module hierarchy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from mlflow_cc.analysis.layer_samples import AlignedSource, sample_specs, scale_rows
from mlflow_cc.artifacts import open_tensors
from mlflow_cc.errors import ArtifactError

CHANGE_BUCKETS = ("unchanged", "small", "medium", "large", "zeroed", "not compared")
#: Upper bounds of the relative-change buckets unchanged, small, medium (the rest is large).
CHANGE_THRESHOLDS = (0.01, 0.1, 0.5)
ZEROED, NOT_COMPARED = 4, 5
#: Added to |w_base| so that a base zero does not divide by zero.
EPS = 1e-8
DEFAULT_BINS = 30
#: Elements processed at once per tensor (bounds temporaries to a few MB per chunk).
CHUNK = 1 << 18
_THRESHOLDS = np.asarray(CHANGE_THRESHOLDS, np.float32)

STATUS_BASE = "base"
STATUS_OK = "ok"
STATUS_SHAPE = "shape differs"
STATUS_MISSING = "missing"  # the model lacks a tensor the base has
STATUS_NEW = "not in base"  # the model has a tensor the base lacks


class TensorSource(Protocol):
    """What the comparison reads: ``keys()``, ``shape(name)``, ``get(name)`` (e.g. a TensorFile)."""

    def keys(self) -> Sequence[str]: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def get(self, name: str) -> np.ndarray: ...


class ArraySource:
    """A :class:`TensorSource` over in-memory arrays (tests, small models)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._arrays = arrays

    def keys(self) -> list[str]:
        return list(self._arrays)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(np.shape(self._arrays[name]))

    def get(self, name: str) -> np.ndarray:
        return np.asarray(self._arrays[name])


@dataclass
class TensorHistogram:
    """Shared bins of one tensor: ``edges`` (bins + 1) and, per model, counts (buckets x bins)."""

    edges: np.ndarray
    counts: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class LayerComparison:
    """Per-tensor comparison of several models against a base.

    ``tensors``: one row per (tensor name, model), the base included (status "base"):
    ``name``, ``module``, ``model``, ``status``, ``shape``, ``numel``, ``zeros``,
    ``zero_both``/``zero_model_only``/``zero_base_only`` (element counts; NaN when not
    compared), ``sparsity`` (zeros / numel), the same split as fractions
    (``*_frac``), ``change``, ``changed_frac``, ``nonfinite``, and the sums behind
    ``change`` (``diff_sq``, ``base_sq``) so that it can be aggregated, and ``sampled``
    (compared on a fixed sample of the tensor, counts scaled to its size).
    ``unavailable``: models whose tensors could not be read, with the reason.
    """

    kind: str
    base: str
    models: list[str]
    tensors: pd.DataFrame
    histograms: dict[str, TensorHistogram]
    unavailable: dict[str, str] = field(default_factory=dict)

    def module_tree(self) -> pd.DataFrame:
        """Counts summed up the module hierarchy: module ``a.b`` holds all tensors under it.

        One row per (``module``, ``model``) with ``parent``, ``depth``, ``n_tensors``,
        ``numel``, ``zeros`` and the sparsity split (counts and ``*_frac`` fractions of
        the compared elements), ``change`` (normalized L2 over all compared elements),
        and ``n_shape_differs``/``n_missing``/``n_sampled``. The root module is "" (the whole model).
        Histograms are per tensor only: bins differ between tensors, so they do not add.
        """
        t = self.tensors
        if t.empty:
            return pd.DataFrame(columns=["module", "parent", "depth", "model"])
        paths = t["module"].map(_ancestors)
        expanded = t.assign(tree=paths).explode("tree")
        expanded["n_shape_differs"] = (expanded["status"] == STATUS_SHAPE).astype(int)
        expanded["n_missing"] = expanded["status"].isin([STATUS_MISSING, STATUS_NEW]).astype(int)
        expanded["n_sampled"] = expanded["sampled"].astype(bool).astype(int)
        sums = ["numel", "zeros", "zero_both", "zero_model_only", "zero_base_only", "compared",
                "diff_sq", "base_sq", "changed", "n_shape_differs", "n_missing", "n_sampled"]
        tree = (expanded.groupby(["tree", "model"], sort=False)
                .agg(n_tensors=("name", "size"), **{c: (c, "sum") for c in sums})
                .reset_index().rename(columns={"tree": "module"}))
        _add_fractions(tree)
        tree["depth"] = tree["module"].map(lambda m: 0 if m == "" else m.count(".") + 1)
        tree["parent"] = tree["module"].map(_parent)
        return tree.sort_values(["module", "model"], kind="stable").reset_index(drop=True)


def compare_layers(base: TensorSource, models: Mapping[str, TensorSource], *, base_key: str = "base",
                   kind: str = "weights", bins: int = DEFAULT_BINS, names: Sequence[str] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> LayerComparison:
    """Compare every tensor of ``models`` (key -> source) with the ``base`` source.

    ``names``: the tensors to compare, in order (default: the base's, then any only
    models have). ``progress(done, total)`` is called after each tensor. Memory: the
    base's tensor plus one model's tensor (and temporaries of that size) at a time.
    """
    keys = [k for k in models if k != base_key]
    sources = {base_key: base, **{k: models[k] for k in keys}}
    specs = sample_specs(sources)
    if specs:
        sources = {k: AlignedSource(src, specs) for k, src in sources.items()}
    key_sets = {k: set(src.keys()) for k, src in sources.items()}
    if names is None:
        names = list(iter_names(sources))
    rows: list[dict[str, object]] = []
    histograms: dict[str, TensorHistogram] = {}
    for done, name in enumerate(names, start=1):
        present = [k for k in [base_key, *keys] if name in key_sets[k]]
        # An activation is keyed by its module; a weight by module + "." + parameter.
        module = name if kind == "activations" else _module_of(name)
        hist, tensor_rows = _compare_tensor(name, module, base_key, keys, present, sources, bins)
        if name in specs:
            scale_rows(tensor_rows, hist.counts, sources, name)
        histograms[name] = hist
        rows.extend(tensor_rows)
        if progress is not None:
            progress(done, len(names))
    table = pd.DataFrame(rows, columns=_ROW_COLUMNS)
    table["sampled"] = table["sampled"].fillna(False).astype(bool)
    _add_fractions(table)
    return LayerComparison(kind=kind, base=base_key, models=[base_key, *keys], tensors=table,
                           histograms=histograms)


def compare_layer_runs(client: MlflowClient, base_run_id: str, run_ids: Sequence[str], *,
                       kind: str = "weights", bins: int = DEFAULT_BINS,
                       progress: Callable[[int, int], None] | None = None) -> LayerComparison:
    """:func:`compare_layers` over runs' logged tensors, keyed by run id.

    A model whose tensors are not logged or unreadable is left out and listed in
    ``unavailable`` with the reason; a base without them raises :class:`ArtifactError`.
    """
    unavailable: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(open_tensors(client, base_run_id, kind))
        models = {}
        for run_id in run_ids:
            if run_id == base_run_id:
                continue
            try:
                models[run_id] = stack.enter_context(open_tensors(client, run_id, kind))
            except ArtifactError as exc:
                unavailable[run_id] = exc.reason
        result = compare_layers(base, models, base_key=base_run_id, kind=kind, bins=bins, progress=progress)
    result.unavailable = unavailable
    return result


# =============================================================================
_ROW_COLUMNS = ["name", "module", "model", "status", "shape", "numel", "zeros", "nonfinite", "compared",
                "zero_both", "zero_model_only", "zero_base_only", "diff_sq", "base_sq", "changed", "sampled"]


def _compare_tensor(name: str, module: str, base_key: str, keys: list[str], present: list[str],
                    sources: Mapping[str, TensorSource], bins: int) -> tuple[TensorHistogram, list[dict]]:
    # Pass 1: the shared range over base and models, one tensor in memory at a time.
    lo, hi = np.inf, -np.inf
    for k in present:
        values = _finite(sources[k].get(name))
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        del values
    if not np.isfinite(lo):
        lo, hi = 0.0, 0.0
    if hi == lo:  # a constant tensor: one unit-wide range around it
        lo, hi = lo - 0.5, hi + 0.5
    hist = TensorHistogram(edges=np.linspace(lo, hi, bins + 1))

    # Pass 2: the base once, then each model against it.
    base = sources[base_key].get(name).astype(np.float32, copy=False) if base_key in present else None
    rows = []
    for k in [base_key, *keys]:
        row: dict[str, object] = {"name": name, "module": module, "model": k}
        if k not in present:
            row.update(status=STATUS_MISSING, shape=None, numel=0, zeros=0, nonfinite=0, compared=0)
            rows.append(row)
            continue
        w = base if k == base_key else sources[k].get(name).astype(np.float32, copy=False)
        assert w is not None
        if k == base_key:
            row["status"] = STATUS_BASE
        elif base is None:
            row["status"] = STATUS_NEW
        else:
            row["status"] = STATUS_OK if base.shape == w.shape else STATUS_SHAPE
        against = base.reshape(-1) if row["status"] in (STATUS_OK, STATUS_BASE) and base is not None else None
        row["shape"] = list(w.shape)
        hist.counts[k] = _accumulate(w.reshape(-1), against, lo, hi, bins, row)
        rows.append(row)
        del w
    return hist, rows


def _accumulate(w: np.ndarray, b: np.ndarray | None, lo: float, hi: float, bins: int,
                row: dict[str, object]) -> np.ndarray:
    """Histogram counts (buckets x bins) of ``w`` split by change to ``b``; fills ``row``'s counts.

    Works through the tensor in chunks of :data:`CHUNK` elements so that temporaries
    (masks, bucket and bin indices) stay a few megabytes whatever the tensor's size.
    Arithmetic is float32 and int32 (half the memory traffic of float64/int64); the
    sums of squares are accumulated per chunk into Python floats.
    """
    counts = np.zeros(len(CHANGE_BUCKETS) * bins, np.int64)
    acc = dict.fromkeys(("zeros", "nonfinite", "zero_both", "zero_model_only", "zero_base_only",
                         "changed"), 0)
    diff_sq = base_sq = 0.0
    scale = np.float32(bins / (hi - lo))
    for start in range(0, w.size, CHUNK):
        wc = w[start:start + CHUNK]
        finite = np.isfinite(wc)
        all_finite = bool(finite.all())
        zw = wc == 0
        acc["zeros"] += int(np.count_nonzero(zw))
        acc["nonfinite"] += int(wc.size - np.count_nonzero(finite))
        # The histogram bin of each value: equal widths over [lo, hi], hi in the last bin.
        with np.errstate(invalid="ignore", over="ignore"):
            cell = ((wc - np.float32(lo)) * scale).astype(np.int32)
        np.clip(cell, 0, bins - 1, out=cell)
        if b is None:
            cell += NOT_COMPARED * bins
        else:
            bc = b[start:start + CHUNK]
            zb = bc == 0
            model_only = zw & ~zb
            acc["zero_both"] += int(np.count_nonzero(zw & zb))
            acc["zero_model_only"] += int(np.count_nonzero(model_only))
            acc["zero_base_only"] += int(np.count_nonzero(zb & ~zw))
            diff = np.abs(wc - bc)
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                rel = diff / (np.abs(bc) + np.float32(EPS))
            changed = rel >= _THRESHOLDS[0]
            acc["changed"] += int(np.count_nonzero(changed))
            # bucket = number of thresholds reached (0 unchanged .. 3 large); zeroed overrides.
            bucket = changed.astype(np.int32)
            bucket += rel >= _THRESHOLDS[1]
            bucket += rel >= _THRESHOLDS[2]
            bucket[model_only] = ZEROED
            bucket *= bins
            cell += bucket
            if all_finite and np.isfinite(bc).all():
                diff_sq += float(np.dot(diff, diff))
                base_sq += float(np.dot(bc, bc))
            else:
                ok = np.isfinite(diff) & np.isfinite(bc)
                diff_sq += float(np.dot(diff[ok], diff[ok]))
                base_sq += float(np.dot(bc[ok], bc[ok]))
        counts += np.bincount(cell if all_finite else cell[finite], minlength=counts.size)
    row.update(numel=int(w.size), zeros=acc["zeros"], nonfinite=acc["nonfinite"])
    if b is not None:
        row.update(compared=int(w.size), zero_both=acc["zero_both"], zero_model_only=acc["zero_model_only"],
                   zero_base_only=acc["zero_base_only"], changed=acc["changed"], diff_sq=diff_sq, base_sq=base_sq)
    else:
        row["compared"] = 0
    return counts.reshape(len(CHANGE_BUCKETS), bins)


def _finite(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values).reshape(-1)
    return flat if np.isfinite(flat).all() else flat[np.isfinite(flat)]


def _add_fractions(table: pd.DataFrame) -> None:
    numel = table["numel"].astype(float)
    compared = table["compared"].astype(float).where(lambda c: c > 0)
    table["sparsity"] = table["zeros"] / numel.where(numel > 0)
    for col in ("zero_both", "zero_model_only", "zero_base_only"):
        table[f"{col}_frac"] = table[col].astype(float) / compared
    if "changed" in table.columns:
        table["changed_frac"] = table["changed"].astype(float) / compared
    with np.errstate(invalid="ignore", divide="ignore"):
        table["change"] = np.sqrt(table["diff_sq"].astype(float)) / (np.sqrt(table["base_sq"].astype(float)) + EPS)
    table.loc[compared.isna(), "change"] = np.nan


def _module_of(name: str) -> str:
    """``a.b.weight`` -> ``a.b``; ``weight`` (a top-level parameter) -> "" (the root)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def _ancestors(module: str) -> list[str]:
    parts = module.split(".") if module else []
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _parent(module: str) -> str | None:
    if module == "":
        return None
    return module.rsplit(".", 1)[0] if "." in module else ""


def iter_names(sources: Mapping[str, TensorSource]) -> Iterator[str]:
    """Every tensor name across sources, first-seen order (for a custom ``names`` order)."""
    seen: set[str] = set()
    for src in sources.values():
        for name in src.keys():  # noqa: SIM118 - a TensorSource need not be iterable
            if name not in seen:
                seen.add(name)
                yield name
