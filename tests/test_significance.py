"""Paired significance: McNemar against scipy/statsmodels and hand-computed cases, BH against statsmodels,
the vectorized bootstrap against a plain resampling bootstrap, and the behaviour comparison's rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from mlflow_cc.analysis.behaviours import compare_behaviours
from mlflow_cc.analysis.significance import (
    Partition,
    behaviour_significance,
    benjamini_hochberg,
    mcnemar_exact,
    paired_significance,
)
from mlflow_cc.artifacts import Outputs

B = 2000


def _one(table: pd.DataFrame, partition: str, key: str, model: str) -> pd.Series:
    rows = table[(table.partition == partition) & (table.key == key) & (table.model == model)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_mcnemar_exact_matches_scipy_and_statsmodels() -> None:
    rng = np.random.default_rng(3)
    pairs = [(0, 0), (0, 1), (1, 4), (5, 5), (3, 17), (40, 61), (250, 199), *rng.integers(0, 400, (30, 2)).tolist()]
    b = np.array([p[0] for p in pairs])
    c = np.array([p[1] for p in pairs])
    ours = mcnemar_exact(b, c)
    for bi, ci, p in zip(b, c, ours):
        m = int(bi + ci)
        expected_scipy = stats.binomtest(int(min(bi, ci)), m, 0.5).pvalue if m else 1.0
        assert p == pytest.approx(expected_scipy, abs=1e-9)
        expected_sm = mcnemar([[7, bi], [ci, 9]], exact=True).pvalue
        assert p == pytest.approx(expected_sm, abs=1e-9)


def test_mcnemar_hand_computed_and_mid_p() -> None:
    # b=1, c=4: P(X<=1 | 5, 1/2) = (1 + 5)/32; exact two-sided 0.375; mid-p subtracts P(X=1) = 5/32.
    assert mcnemar_exact(1, 4) == pytest.approx(0.375, abs=1e-12)
    assert mcnemar_exact(1, 4, mid_p=True) == pytest.approx(0.375 - 5 / 32, abs=1e-12)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64, abs=1e-12)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0


def test_benjamini_hochberg_matches_statsmodels() -> None:
    rng = np.random.default_rng(7)
    p = np.concatenate([rng.uniform(0, 1, 40), rng.uniform(0, 0.01, 10), [0.0, 1.0, 0.03, 0.03]])
    expected = multipletests(p, alpha=0.05, method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(p), expected, atol=1e-12, rtol=0)
    # NaN (an untested cell) is left out of the family.
    with_nan = np.array([0.01, np.nan, 0.04, 0.02])
    q = benjamini_hochberg(with_nan)
    assert math.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3]], multipletests([0.01, 0.04, 0.02], method="fdr_bh")[1], atol=1e-12)


def test_binary_rows_are_mcnemar_on_each_rows_discordant_pairs() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    base = (rng.random(n) < 0.8).astype(float)
    groups = rng.integers(0, 4, n)
    flip = rng.random(n) < np.array([0.01, 0.03, 0.05, 0.2])[groups]
    model = np.where(flip, 1 - base, base)
    model[rng.random(n) < 0.1] = np.nan  # instances the model lacks are left out of the pairs
    keys = ["a", "b", "c", "d"]
    table = paired_significance(base, {"m": model}, [Partition("classes", groups, keys)], resamples=B)
    assert set(table.test) == {"mcnemar exact"}
    for g, key in enumerate(keys):
        row = _one(table, "classes", key, "m")
        ok = (groups == g) & np.isfinite(model)
        b = int(np.sum(ok & (base == 1) & (model == 0)))
        c = int(np.sum(ok & (base == 0) & (model == 1)))
        assert row.n == ok.sum()
        assert row.delta == pytest.approx((c - b) / ok.sum(), abs=1e-12)
        assert row.p == pytest.approx(stats.binomtest(min(b, c), b + c).pvalue, abs=1e-9)
        assert row.lo <= row.delta <= row.hi
    q = multipletests(table.p.to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(table.q.to_numpy(), q, atol=1e-12)
    assert list(table.significant) == list(q <= 0.05)


def test_hand_computed_small_case() -> None:
    base = np.array([1, 1, 0, 0, 1], float)
    model = np.array([0, 1, 1, 1, 1], float)
    row = _one(paired_significance(base, {"m": model}, [Partition("all", np.zeros(5, np.int64), ["all"])]),
               "all", "all", "m")
    # b = 1 (base right, model wrong), c = 2; Δ = (2 - 1)/5; p = 2 P(X <= 1 | 3, 1/2) = 2 * 4/8 -> 1.
    assert (row.n, row.delta, row.p, bool(row.significant)) == (5, pytest.approx(0.2), pytest.approx(1.0), False)
    # Continuous: differences 1, 2, 3 -> mean 2; resampled means lie within [1, 3].
    cont = paired_significance(np.zeros(3), {"m": np.array([1.0, 2.0, 3.0])},
                               [Partition("all", np.zeros(3, np.int64), ["all"])], resamples=B)
    row = _one(cont, "all", "all", "m")
    assert row.test == "bootstrap" and row.delta == pytest.approx(2.0)
    assert 1.0 <= row.lo < 2.0 < row.hi <= 3.0


def _reference_bootstrap(d: np.ndarray, groups: np.ndarray, n_groups: int, seed: int,
                         level: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Resample the instances with replacement B times (a loop), mean difference per row, percentiles."""
    rng = np.random.default_rng(seed)
    n = len(d)
    reps = np.empty((B, n_groups))
    for r in range(B):
        idx = rng.integers(0, n, n)
        for g in range(n_groups):
            picked = d[idx][groups[idx] == g]
            reps[r, g] = picked.mean() if picked.size else np.nan
    return np.nanquantile(reps, level / 2, axis=0), np.nanquantile(reps, 1 - level / 2, axis=0)


def test_bootstrap_interval_matches_a_plain_resampling_bootstrap() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    groups = rng.integers(0, 3, n)
    base = rng.normal(size=n)
    # Skewed, group-dependent differences (KL-like: positive, long tail).
    model = base + rng.exponential(np.array([0.05, 0.2, 0.5])[groups]) - 0.1
    table = paired_significance(base, {"m": model}, [Partition("classes", groups, ["0", "1", "2"])],
                                resamples=B, seed=1)
    d = model - base
    lo_ref, hi_ref = _reference_bootstrap(d, groups, 3, seed=2)
    for g in range(3):
        row = _one(table, "classes", str(g), "m")
        dg = d[groups == g]
        se = dg.std(ddof=1) / math.sqrt(dg.size)
        assert row.delta == pytest.approx(dg.mean(), abs=1e-9)
        # The stated Monte Carlo error: endpoints agree within 0.35 standard errors.
        assert abs(row.lo - lo_ref[g]) <= 0.35 * se, (g, row.lo, lo_ref[g], se)
        assert abs(row.hi - hi_ref[g]) <= 0.35 * se, (g, row.hi, hi_ref[g], se)
        # The interval's width is the normal one (n = 1,000 a row) within its Monte Carlo error (≈ 2 %).
        assert (row.hi - row.lo) / (2 * stats.norm.ppf(0.975) * se) == pytest.approx(1.0, abs=0.06)
        # p from the bootstrap standard error: close to the normal test with the analytic one.
        z = abs(dg.mean()) / se
        assert row.p == pytest.approx(2 * stats.norm.sf(z), rel=0.25, abs=1e-6)


def test_dataset_wide_row_equals_a_separate_computation() -> None:
    rng = np.random.default_rng(9)
    n = 2000
    groups = rng.integers(0, 4, n)
    base = rng.normal(size=n)
    model = base + rng.normal(0.05, 1, n)
    whole = Partition("all", np.zeros(n, np.int64), ["all"])
    both = paired_significance(base, {"m": model}, [whole, Partition("classes", groups, list("abcd"))])
    alone = paired_significance(base, {"m": model}, [whole])
    a, b = _one(both, "all", "all", "m"), _one(alone, "all", "all", "m")
    assert a.delta == pytest.approx(b.delta, abs=1e-12)
    se = (model - base).std() / math.sqrt(n)
    assert abs(a.lo - b.lo) <= 0.35 * se and abs(a.hi - b.hi) <= 0.35 * se


def test_seeded_and_bad_level() -> None:
    rng = np.random.default_rng(1)
    base, model = rng.normal(size=500), rng.normal(size=500)
    parts = [Partition("all", np.zeros(500, np.int64), ["all"])]
    first = paired_significance(base, {"m": model}, parts, seed=4)
    pd.testing.assert_frame_equal(first, paired_significance(base, {"m": model}, parts, seed=4))
    with pytest.raises(ValueError, match="level"):
        paired_significance(base, {"m": model}, parts, level=1.5)


def test_behaviour_significance_rows_match_the_grid_rows() -> None:
    rng = np.random.default_rng(2)
    n, k = 600, 3
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    labels = rng.integers(0, k, n)
    base_logits = rng.normal(size=(n, k)).astype(np.float32)
    model_logits = (base_logits + rng.normal(0, 0.8, (n, k))).astype(np.float32)
    base = Outputs(instance_ids=ids, labels=labels, predictions=base_logits.argmax(1), logits=base_logits)
    model = Outputs(instance_ids=ids, labels=labels, predictions=model_logits.argmax(1), logits=model_logits)
    meta = pd.DataFrame({"instance_id": ids, "meta_group": np.where(rng.random(n) < 0.1, "rare", "common")})
    result = compare_behaviours(base, {"m": model}, base_key="b", dataset=meta, class_names=["x", "y", "z"])
    table = behaviour_significance(result, "correct")
    assert set(table.partition) == {"all", "classes", "subgroups"}
    rel = result.by_class(relative=True)
    for row in rel.itertuples(index=False):
        cell = _one(table, "classes", str(row.label), "m")
        assert cell.delta == pytest.approx(getattr(row, "_" + str(list(rel.columns).index("correct|m"))), abs=1e-12)
    sub = result.by_subgroup(relative=True)
    assert sorted(table[table.partition == "subgroups"].key) == sorted(f"group={v}" for v in sub["value"])
    overall = result.overall(relative=True).loc["m", "correct"]
    assert _one(table, "all", "all", "m").delta == pytest.approx(overall, abs=1e-12)
    kl = behaviour_significance(result, "kl")
    assert set(kl.test) == {"bootstrap"} and bool(_one(kl, "all", "all", "m").significant)
    assert behaviour_significance(result, "no such metric").empty


def test_rows_without_pairs_are_not_tested() -> None:
    n = 60
    parts = [Partition("all", np.zeros(n, np.int64), ["all"]),
             Partition("classes", np.arange(n) % 3, ["0", "1", "2", "empty"])]
    rng = np.random.default_rng(0)
    for base in (np.zeros(n), rng.random(n)):  # 0/1 (McNemar) and continuous (bootstrap)
        table = paired_significance(base, {"gone": np.full(n, np.nan), "here": base + (base > 0.5)}, parts,
                                    resamples=200)
        untested = table[(table.model == "gone") | (table.key == "empty")]
        assert (untested.n == 0).all() and untested[["delta", "lo", "hi", "p", "q"]].isna().all().all()
        assert not untested.significant.any()
        assert table[(table.model == "here") & (table.key != "empty")].p.notna().all()
