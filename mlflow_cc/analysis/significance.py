"""Paired significance of every model-vs-base difference in Behaviours (pure numpy/scipy).

Each model is compared with the base on the same instances (pairs where both values are
finite), dataset-wide (``all``) and per row of a *partition* (per class, per subgroup):

* **0/1 outcomes** (correct, exact match, flipped: every finite value is 0 or 1):
  McNemar's **exact** test on the discordant pairs — b instances the base gets 1 and the
  model 0, c the other way round; p = min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, ½)
  (``mid_p=True``: the mid-p variant, p − P(X = min(b, c))). This is
  ``scipy.stats.binomtest(min(b, c), b + c).pvalue`` and statsmodels' ``mcnemar(exact=True)``.
* **Continuous per-instance metrics** (confidence, KL, F1, NLL, ...): a paired bootstrap of
  the mean difference (model − base). p = 2·Φ(−|Δ| / se*), with se* the standard deviation of
  the bootstrap replicates.

Every difference gets the percentile bootstrap interval at level 1 − ``level`` (0/1
outcomes too). The bootstrap is the Poisson bootstrap: replicate r gives instance i the
weight w_ri ~ Poisson(1) (drawn by inverse CDF from 16 random bits: probabilities within
1/65,536 of Poisson(1); counts above 7, probability 1e-5, cut), and the replicate mean of a
row is Σ w·d / Σ w over the row's pairs. It equals the classic resampling of n instances with
replacement to first order and needs no per-replicate index sampling: a block of replicates is
one matrix of weights times the matrix of every model's differences (one BLAS product), shared
by every model (the resamples are paired across models) and by every row of a partition (rows
are contiguous slices of the instances sorted by row). For 0/1 outcomes the replicate's
counts are drawn directly: Poisson(b), Poisson(c) and Poisson(n − b − c) per row.
It is seeded (``seed``): the same data give the same intervals.

Monte Carlo error: with ``resamples`` = B = 2,000 an interval endpoint at 2.5 % has a standard
error of about √(0.025·0.975/B)/φ(1.96) ≈ 0.06 standard errors of the mean difference; two
bootstraps of the same data (ours and a reference) agree within 0.35 standard errors
(4 Monte Carlo standard deviations of their difference).

Multiple rows: Benjamini–Hochberg across the cells of one table (every row × model of a
partition; the dataset-wide row across models), ``q`` the adjusted p-value; a cell is
``significant`` when q ≤ ``level``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats
from threadpoolctl import threadpool_limits

from mlflow_cc.analysis.behaviours import Behaviours

#: Replicates of the bootstrap (the issue's floor is 2,000).
RESAMPLES = 2000
#: Default significance level (false discovery rate across rows) and 1 − interval level.
LEVEL = 0.05
#: Replicates x instances of one tile of bootstrap weights (drawn and used while in the CPU cache).
_ROWS, _TILE = 250, 8192
#: Cumulative Poisson(1) probabilities as 16-bit thresholds: weight = number of thresholds ≤ u.
_POISSON_EDGES = np.round(stats.poisson.cdf(np.arange(8), 1.0) * 65536).astype(np.uint32)

COLUMNS = ["partition", "key", "model", "n", "delta", "lo", "hi", "p", "q", "significant", "test"]


@dataclass(frozen=True)
class Partition:
    """Rows of a table: ``codes[i]`` is instance i's row (−1: in no row), ``keys[g]`` row g's key."""

    name: str
    codes: np.ndarray
    keys: Sequence[str]


def mcnemar_exact(b: np.ndarray | int, c: np.ndarray | int, mid_p: bool = False) -> np.ndarray:
    """Two-sided McNemar exact p-values from discordant counts (vectorized; 1 where b + c = 0)."""
    b, c = np.asarray(b, np.int64), np.asarray(c, np.int64)
    k, m = np.minimum(b, c), b + c
    p = 2.0 * stats.binom.cdf(k, m, 0.5)
    if mid_p:
        p = p - stats.binom.pmf(k, m, 0.5)
    return np.where(m > 0, np.minimum(p, 1.0), 1.0)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q); NaN entries are not tested and stay NaN."""
    p = np.asarray(p, np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return q
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q[ok[order]] = np.minimum(ranked, 1.0)
    return q


def is_binary(*columns: np.ndarray) -> bool:
    """Whether every finite value of ``columns`` is 0 or 1 (a 0/1 outcome)."""
    for values in columns:
        finite = values[np.isfinite(values)]
        if finite.size and not np.all((finite == 0) | (finite == 1)):
            return False
    return True


def paired_significance(base: np.ndarray, models: Mapping[str, np.ndarray], partitions: Sequence[Partition], *,
                        level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0,
                        binary: bool | None = None, mid_p: bool = False) -> pd.DataFrame:
    """Test every model against ``base`` (per-instance values, aligned; NaN = no value) per row.

    Returns one row per (partition, key, model) with the columns of :data:`COLUMNS`:
    ``n`` pairs, ``delta`` the mean of model − base, ``lo``/``hi`` its bootstrap interval,
    ``p``, ``q`` (Benjamini–Hochberg within the partition), ``significant`` and ``test``
    ("mcnemar exact", "mcnemar mid-p" or "bootstrap"). ``binary`` None: detected
    (:func:`is_binary`). A row with no pair has NaN figures and is not tested.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples!r}")
    base = np.asarray(base, np.float64)
    names = list(models)
    values = [np.asarray(models[m], np.float64) for m in names]
    if binary is None:
        binary = is_binary(base, *values)
    diffs = np.stack([v - base for v in values], axis=1) if names else np.zeros((len(base), 0))
    valid = np.isfinite(diffs)
    diffs = np.where(valid, diffs, 0.0)
    rng = np.random.Generator(np.random.SFC64(seed))
    if binary:
        results = [_binary_partition(diffs, valid, part, rng, resamples, level, mid_p) for part in partitions]
        test = "mcnemar mid-p" if mid_p else "mcnemar exact"
    else:
        results = _bootstrap_partitions(diffs, valid, partitions, rng, resamples, level)
        test = "bootstrap"
    frames = []
    for part, (n, diff, lo, hi, p) in zip(partitions, results):
        groups = len(part.keys)
        frames.append(pd.DataFrame({
            "partition": part.name, "key": np.repeat(np.asarray(part.keys, dtype=object), len(names)),
            "model": np.tile(np.asarray(names, dtype=object), groups), "n": n.ravel(), "delta": diff.ravel(),
            "lo": lo.ravel(), "hi": hi.ravel(), "p": p.ravel()}))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["q"] = np.nan
    for rows in table.groupby("partition", sort=False).groups.values():
        table.loc[rows, "q"] = benjamini_hochberg(table.loc[rows, "p"].to_numpy(np.float64))
    table["significant"] = table["q"].to_numpy() <= level
    table["test"] = test
    return table[COLUMNS]


def behaviour_significance(behaviours: Behaviours, metric: str, *, level: float = LEVEL,
                           resamples: int = RESAMPLES, seed: int = 0, mid_p: bool = False) -> pd.DataFrame:
    """:func:`paired_significance` of every model of a behaviour comparison against its base.

    Partitions (named as the grid's row kinds, keys as the grid's row keys): ``all``
    (key "all"), ``classes`` (key: the class index), ``subgroups`` (key "attribute=value",
    every attribute; corrected together).
    """
    if metric not in behaviours.metrics or not behaviours.metrics[metric].per_instance:
        return pd.DataFrame(columns=COLUMNS)
    # reader-scale: one metric's columns, not the whole wide table (a million instances x 12 models)
    n = len(behaviours)
    others = [key for key in behaviours.models if key != behaviours.base]
    base = behaviours.values(metric, behaviours.base)
    models = {key: behaviours.values(metric, key) for key in others}
    labels = np.asarray(behaviours.labels, np.int64)
    classes = np.unique(labels[labels >= 0])
    parts = [Partition("all", np.zeros(n, np.int64), ["all"]),
             Partition("classes", np.where(labels >= 0, np.searchsorted(classes, labels), -1),
                       [str(c) for c in classes])]
    for col in behaviours.subgroup_columns:
        codes, values = pd.factorize(pd.Series(behaviours.base_columns[col], dtype=object), sort=True)
        parts.append(Partition("subgroups", codes.astype(np.int64),
                               [f"{col[len('meta_'):]}={v}" for v in values]))
    return paired_significance(base, models, parts, level=level, resamples=resamples, seed=seed, mid_p=mid_p)


# -- internals ----------------------------------------------------------------------
def _sorted_rows(part: Partition, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Instances of the partition's rows sorted by row, and the rows' boundaries in that order."""
    codes = np.asarray(part.codes, np.int64)
    if codes.shape != (n,):
        raise ValueError(f"partition {part.name!r} has {codes.shape} codes, expected ({n},)")
    inside = np.flatnonzero((codes >= 0) & (codes < len(part.keys)))
    order = inside[np.argsort(codes[inside], kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes[inside], minlength=len(part.keys)))])
    return order, bounds


def _interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (replicates with NaN — a row left empty — are ignored)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without pairs: all NaN, stays NaN
        lo, hi = np.nanquantile(replicates, [level / 2, 1 - level / 2], axis=0) \
            if replicates.size else (np.full(replicates.shape[1:], np.nan),) * 2
    return lo, hi


def _binary_partition(diffs: np.ndarray, valid: np.ndarray, part: Partition, rng: np.random.Generator,
                      resamples: int, level: float, mid_p: bool) -> tuple[np.ndarray, ...]:
    groups, models = len(part.keys), diffs.shape[1]
    codes = np.asarray(part.codes, np.int64)
    inside = (codes >= 0) & (codes < groups)
    n = np.zeros((groups, models), np.int64)
    b, c = np.zeros_like(n), np.zeros_like(n)
    for j in range(models):
        ok = inside & valid[:, j]
        n[:, j] = np.bincount(codes[ok], minlength=groups)
        b[:, j] = np.bincount(codes[ok & (diffs[:, j] < 0)], minlength=groups)  # base 1, model 0
        c[:, j] = np.bincount(codes[ok & (diffs[:, j] > 0)], minlength=groups)  # base 0, model 1
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(n > 0, (c - b) / np.maximum(n, 1), np.nan)
        bs, cs = rng.poisson(b, (resamples, groups, models)), rng.poisson(c, (resamples, groups, models))
        total = bs + cs + rng.poisson(n - b - c, (resamples, groups, models))
        replicates = np.where(total > 0, (cs - bs) / np.maximum(total, 1), np.nan)
    lo, hi = _interval(replicates, level)
    p = np.where(n > 0, mcnemar_exact(b, c, mid_p), np.nan)
    return n, diff, np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan), p


def _poisson_weights(bits: np.random.BitGenerator, rows: int, n: int) -> np.ndarray:
    """A (rows, n) float32 matrix of Poisson(1) weights from 16 random bits each (inverse CDF)."""
    u = bits.random_raw(-(-rows * n // 4)).view(np.uint16)[:rows * n].reshape(rows, n)
    edges = _POISSON_EDGES
    w = (u >= edges[0]).view(np.uint8)
    w += u >= edges[1]
    w += u >= edges[2]
    flat_u = u.reshape(-1)
    tail = np.flatnonzero(flat_u >= edges[3])  # weights of 4 and more: 1.9 % of entries
    extra = np.zeros(tail.size, np.uint8)
    for edge in edges[3:]:
        extra += flat_u[tail] >= edge
    w.reshape(-1)[tail] += extra
    return w.astype(np.float32)


def _bootstrap_partitions(diffs: np.ndarray, valid: np.ndarray, partitions: Sequence[Partition],
                          rng: np.random.Generator, resamples: int, level: float) -> list[tuple[np.ndarray, ...]]:
    n_inst, models = diffs.shape
    # Column j: model j's differences (0 where no pair); column models + j: 1 where model j has a pair.
    stacked = np.concatenate([diffs, valid], axis=1).astype(np.float32)
    plans = []
    for part in partitions:
        order, bounds = _sorted_rows(part, n_inst)
        rows = stacked[order]
        row_of = np.repeat(np.arange(len(part.keys)), np.diff(bounds))
        n = np.zeros((len(part.keys), models), np.int64)
        s = np.zeros((len(part.keys), models))
        for j in range(models):
            n[:, j] = np.bincount(row_of, weights=valid[order, j], minlength=len(part.keys)).astype(np.int64)
            s[:, j] = np.bincount(row_of, weights=diffs[order, j], minlength=len(part.keys))
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        plans.append((rows, bounds, n, diff, np.zeros((resamples, len(part.keys), 2 * models), np.float64)))
    # A one-row partition of every instance (the dataset-wide row) is the sum of the rows of a
    # partition that also holds every instance once: no product of its own.
    whole = [len(b) == 2 and b[1] == n_inst for _r, b, *_ in plans]
    cover = next((i for i, (_r, b, *_) in enumerate(plans) if b[-1] == n_inst and not whole[i]), None)
    derived = [w and cover is not None for w in whole]
    # Weights are drawn a tile at a time (_ROWS replicates x _TILE sorted positions): the tile stays
    # in the CPU cache from its drawing to its products. Position j of every partition's sorted
    # order gets the tile's column j: each row still gets its own independent Poisson(1) weights.
    bits = rng.bit_generator
    # Many small products: one BLAS thread each (threads woken per product cost more than they
    # give, and far more on a busy machine). The limit is process-wide while it lasts.
    with threadpool_limits(limits=1, user_api="blas"):
        _products(plans, derived, bits, resamples, n_inst)
    for plan, skip in zip(plans, derived):
        if skip:
            plan[4][:] = plans[cover][4].sum(axis=1, keepdims=True)
    results = []
    for _rows, _bounds, n, diff, out in plans:
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows without pairs: NaN
            replicates = np.where(out[..., models:] > 0, out[..., :models] / out[..., models:], np.nan)
            se = np.nanstd(replicates, axis=0, ddof=1) if resamples > 1 else np.full(diff.shape, np.nan)
            z = np.abs(diff) / se
        lo, hi = _interval(replicates, level)
        p = np.where(se > 0, 2.0 * special.ndtr(-z), np.where(diff == 0, 1.0, 0.0))
        tested = n >= 2
        results.append((n, diff, np.where(tested, lo, np.nan), np.where(tested, hi, np.nan),
                        np.where(tested, p, np.nan)))
    return results


def _products(plans: list[tuple[np.ndarray, ...]], derived: list[bool], bits: np.random.BitGenerator,
              resamples: int, n_inst: int) -> None:
    """Fill each plan's replicate sums: tiles of weights times the rows' (difference, pair) columns."""
    for start in range(0, resamples, _ROWS):
        size = min(_ROWS, resamples - start)
        for t0 in range(0, n_inst, _TILE):
            t1 = min(t0 + _TILE, n_inst)
            weights = _poisson_weights(bits, size, t1 - t0)
            for (rows, bounds, _n, _diff, out), skip in zip(plans, derived):
                if skip or t0 >= bounds[-1]:
                    continue
                g = int(np.searchsorted(bounds, t0, side="right")) - 1
                while g < len(bounds) - 1 and bounds[g] < t1:
                    a, e = max(bounds[g], t0), min(bounds[g + 1], t1)
                    if e > a:
                        out[start:start + size, g] += weights[:, a - t0:e - t0] @ rows[a:e]
                    g += 1
