"""Next-token divergence of two language models from their top-k log-probabilities (numpy only).

Capture stores, per reference token position (teacher forced), each model's k most likely next
tokens and their log-probabilities. The full distributions are not stored, so the KL divergence
KL(base || model) at a position is approximated on a coarse vocabulary:

* buckets: every token in the union of the two top-k sets, plus one "other" bucket;
* a model's probability of a token in its own top-k is the stored one; of a union token outside
  its top-k it is a share of the model's remaining mass r = 1 - sum(top-k), namely
  min(smallest top-k probability, r / (number of such tokens + 1)) (the token cannot be more
  likely than the model's k-th token, and the rest of r stays in "other");
* "other" holds what is left, so each model's buckets sum to 1 and the value is a true KL
  between two distributions on the buckets: 0 for identical top-k outputs, large when the
  top-k sets are disjoint.

The per-instance value is the mean over the reference's token positions. Probabilities are
floored at 1e-12 (a token one model rules out costs at most ~27.6 nats).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12
#: Rows of (k_base x k_model) comparisons per chunk (bounds memory at about 8 MB per chunk).
CHUNK_CELLS = 8_000_000


def topk_kl(base_ids: np.ndarray, base_lp: np.ndarray, model_ids: np.ndarray, model_lp: np.ndarray) -> np.ndarray:
    """Approximate KL(base || model) per row: (T, kb) and (T, km) top-k ids and log-probs -> (T,)."""
    t = base_ids.shape[0]
    out = np.empty(t, np.float64)
    step = max(1, CHUNK_CELLS // max(base_ids.shape[1] * model_ids.shape[1], 1))
    for a in range(0, t, step):
        b = min(a + step, t)
        out[a:b] = _topk_kl_chunk(base_ids[a:b], base_lp[a:b].astype(np.float64),
                                  model_ids[a:b], model_lp[a:b].astype(np.float64))
    return out


def _topk_kl_chunk(b_ids: np.ndarray, b_lp: np.ndarray, m_ids: np.ndarray, m_lp: np.ndarray) -> np.ndarray:
    pb, pm = np.exp(b_lp), np.exp(m_lp)
    match = b_ids[:, :, None] == m_ids[:, None, :]  # (T, kb, km)
    b_in_m, m_in_b = match.any(axis=2), match.any(axis=1)
    pm_at_b = np.take_along_axis(pm, match.argmax(axis=2), axis=1)  # model prob of each base token (if in)
    r_b = np.clip(1.0 - pb.sum(axis=1), 0.0, 1.0)
    r_m = np.clip(1.0 - pm.sum(axis=1), 0.0, 1.0)
    miss_m = (~b_in_m).sum(axis=1)  # base tokens outside the model's top-k
    miss_b = (~m_in_b).sum(axis=1)  # model tokens outside the base's top-k
    imp_m = np.minimum(pm.min(axis=1), r_m / (miss_m + 1))
    imp_b = np.minimum(pb.min(axis=1), r_b / (miss_b + 1))
    q_at_b = np.where(b_in_m, pm_at_b, imp_m[:, None])
    kl = np.sum(pb * (np.log(np.maximum(pb, EPS)) - np.log(np.maximum(q_at_b, EPS))), axis=1)
    # The model's own tokens the base does not rank: base mass imp_b each.
    extra = imp_b[:, None] * (np.log(np.maximum(imp_b, EPS))[:, None] - np.log(np.maximum(pm, EPS)))
    kl += np.sum(np.where(m_in_b, 0.0, extra), axis=1)
    other_b = np.maximum(r_b - miss_b * imp_b, 0.0)
    other_m = np.maximum(r_m - miss_m * imp_m, 0.0)
    kl += np.where(other_b > 0, other_b * (np.log(np.maximum(other_b, EPS)) - np.log(np.maximum(other_m, EPS))), 0.0)
    return np.maximum(kl, 0.0)


def instance_divergence(base_offsets: np.ndarray, base_ids: np.ndarray, base_lp: np.ndarray, base_rows: np.ndarray,
                        model_offsets: np.ndarray, model_ids: np.ndarray, model_lp: np.ndarray,
                        model_rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean :func:`topk_kl` over each instance's reference positions, (N,) (NaN where not comparable).

    ``base_rows`` / ``model_rows``: each aligned instance's row in that model's own outputs;
    ``valid``: instances both models have. An instance whose two token counts differ (another
    tokenizer) or that has no tokens is NaN.
    """
    n = len(valid)
    out = np.full(n, np.nan)
    b_len = np.diff(base_offsets)[base_rows]
    m_len = np.diff(model_offsets)[model_rows]
    ok = valid & (b_len == m_len) & (b_len > 0)
    if not ok.any():
        return out
    lens = b_len[ok]
    inst = np.repeat(np.arange(int(ok.sum())), lens)
    within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    b_tok = base_offsets[base_rows[ok]][inst] + within
    m_tok = model_offsets[model_rows[ok]][inst] + within
    kl = topk_kl(base_ids[b_tok], base_lp[b_tok], model_ids[m_tok], model_lp[m_tok])
    out[ok] = np.bincount(inst, weights=kl, minlength=len(lens)) / lens
    return out
