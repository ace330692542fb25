"""Generation outputs (``outputs.parquet`` of kind "generation"): write with validation, read back.

Columns: ``instance_id`` (string), ``prompt`` (string, optional), ``generation`` (string),
``references`` (list of string, at least one), ``score_exact_match`` and ``score_f1``
(computed here, see :mod:`.answers`), ``score_<name>`` (user scores), ``reference_nll``
(float64, optional), ``reference_token_logprobs`` (list of float32, optional) and
``topk_token_ids`` / ``topk_logprobs`` (list of fixed-size lists of k int64 / float32: one
entry per reference token position, teacher forced; optional).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from mlflow_cc.artifacts.answers import exact_match, token_f1
from mlflow_cc.artifacts.output_kinds import (
    GENERATION,
    GenerationData,
    Outputs,
    kind_outputs,
    score_columns,
    write_outputs,
)
from mlflow_cc.artifacts.tables import _instance_ids, _require_finite

#: Scores the writer computes itself (user scores may not use these names).
BUILTIN_SCORES = ("exact_match", "f1")


def log_generation_outputs(
        run_id: str, instance_ids: Sequence[str], generations: Sequence[str],
        references: Sequence[str | Sequence[str]], *, prompts: Sequence[str] | None = None,
        scores: Mapping[str, np.ndarray] | None = None, reference_nll: np.ndarray | None = None,
        reference_token_logprobs: Sequence[np.ndarray] | None = None,
        topk_token_ids: Sequence[np.ndarray] | None = None, topk_logprobs: Sequence[np.ndarray] | None = None,
        dataset: str | None = None, dataset_run_id: str | None = None, allow_nonfinite: bool = False,
        client: MlflowClient | None = None) -> None:
    """Log a generative model's per-instance outputs on an evaluation set to run ``run_id``.

    ``generations``: the generated text per instance; ``references``: a reference answer or a
    list of them per instance (at least one each). Exact match and token F1 (max over the
    references, normalized text) are computed here and stored as scores ``exact_match`` and
    ``f1``. ``scores``: more per-instance scores (N,). Teacher-forced scoring of the reference:
    ``reference_nll`` (N,) mean negative log-likelihood per reference token;
    ``reference_token_logprobs`` per instance (T_i,) log p(reference token);
    ``topk_token_ids`` and ``topk_logprobs`` per instance (T_i, k), the k most likely next
    tokens at each reference position (same k for every instance). Raises ``ValueError`` for
    mismatched lengths or shapes, missing references, duplicate ids or non-finite values
    (unless ``allow_nonfinite``); nothing is written then.
    """
    if client is None:
        client = MlflowClient()
    ids = _instance_ids(instance_ids)
    n = len(ids)
    gens = _texts("generations", generations, n)
    refs = _references(references, n)
    columns: dict[str, pa.Array] = {"instance_id": pa.array(ids, pa.string())}
    if prompts is not None:
        columns["prompt"] = pa.array(_texts("prompts", prompts, n), pa.string())
    columns["generation"] = pa.array(gens, pa.string())
    columns["references"] = pa.array([list(r) for r in refs], pa.list_(pa.string()))
    columns["score_exact_match"] = pa.array([exact_match(g, r) for g, r in zip(gens, refs)], pa.float64())
    columns["score_f1"] = pa.array([token_f1(g, r) for g, r in zip(gens, refs)], pa.float64())
    columns.update(score_columns(scores, n, allow_nonfinite, taken=BUILTIN_SCORES))
    if reference_nll is not None:
        nll = np.asarray(reference_nll, dtype=np.float64)
        if nll.shape != (n,):
            raise ValueError(f"reference_nll must have shape ({n},), not {nll.shape}")
        if not allow_nonfinite:
            _require_finite("reference_nll", nll)
        columns["reference_nll"] = pa.array(nll, pa.float64())
    lengths: list[int] | None = None
    if reference_token_logprobs is not None:
        flat, lengths = _per_token("reference_token_logprobs", reference_token_logprobs, n, None, np.float32,
                                   allow_nonfinite)
        columns["reference_token_logprobs"] = pa.ListArray.from_arrays(_offsets(lengths), pa.array(flat, pa.float32()))
    if (topk_token_ids is None) != (topk_logprobs is None):
        raise ValueError("topk_token_ids and topk_logprobs go together: pass both or neither")
    if topk_token_ids is not None and topk_logprobs is not None:
        ids_flat, id_lengths = _per_token("topk_token_ids", topk_token_ids, n, lengths, np.int64, True)
        lp_flat, _ = _per_token("topk_logprobs", topk_logprobs, n, id_lengths, np.float32, allow_nonfinite)
        k = ids_flat.shape[1]
        if lp_flat.shape[1] != k:
            raise ValueError(f"topk_logprobs have k={lp_flat.shape[1]} columns, topk_token_ids k={k}")
        offsets = _offsets(id_lengths)
        columns["topk_token_ids"] = pa.ListArray.from_arrays(
            offsets, pa.FixedSizeListArray.from_arrays(pa.array(ids_flat.ravel(), pa.int64()), k))
        columns["topk_logprobs"] = pa.ListArray.from_arrays(
            offsets, pa.FixedSizeListArray.from_arrays(pa.array(lp_flat.ravel(), pa.float32()), k))
    write_outputs(client, run_id, GENERATION, columns, dataset, dataset_run_id)


def _texts(what: str, values: Sequence[str], n: int) -> list[str]:
    values = list(values.tolist() if isinstance(values, np.ndarray) else values)
    if len(values) != n:
        raise ValueError(f"{what} must have {n} entries (one per instance id), not {len(values)}")
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise ValueError(f"{what}[{bad}] is {type(values[bad]).__name__}, not text")
    return values


def _references(references: Sequence[str | Sequence[str]], n: int) -> list[tuple[str, ...]]:
    refs = list(references.tolist() if isinstance(references, np.ndarray) else references)
    if len(refs) != n:
        raise ValueError(f"references must have {n} entries (one per instance id), not {len(refs)}")
    out: list[tuple[str, ...]] = []
    for i, ref in enumerate(refs):
        options = (ref,) if isinstance(ref, str) else tuple(ref) if ref is not None else ()
        if not options or not all(isinstance(r, str) for r in options):
            raise ValueError(f"references[{i}] is missing: give a reference text or a list of them "
                             "(at least one) for every instance")
        out.append(options)
    return out


def _per_token(what: str, values: Sequence[np.ndarray], n: int, lengths: list[int] | None,
               dtype: type, allow_nonfinite: bool) -> tuple[np.ndarray, list[int]]:
    """Concatenate per-instance token arrays ((T_i,) or (T_i, k)), checking counts and shapes."""
    arrays = [np.asarray(v) for v in values]
    if len(arrays) != n:
        raise ValueError(f"{what} must have {n} entries (one per instance id), not {len(arrays)}")
    ndim = 1 if what == "reference_token_logprobs" else 2
    width = None
    for i, arr in enumerate(arrays):
        if arr.ndim != ndim or (lengths is not None and arr.shape[0] != lengths[i]):
            want = f"({lengths[i] if lengths else 'T_i'}{', k' if ndim == 2 else ''})"
            raise ValueError(f"{what}[{i}] must have shape {want}, not {arr.shape}")
        if ndim == 2:
            if width is None:
                width = arr.shape[1]
            if arr.shape[1] != width or width < 1:
                raise ValueError(f"{what}[{i}] has k={arr.shape[1]}; every instance needs the same k >= 1")
        if dtype is np.int64 and arr.size and arr.dtype.kind not in "iu":
            raise ValueError(f"{what}[{i}] must hold integer token ids, not {arr.dtype}")
    shape = (0,) if ndim == 1 else (0, width or 1)
    flat = np.concatenate([a.astype(dtype) for a in arrays]) if arrays else np.zeros(shape, dtype)
    if not allow_nonfinite:
        _require_finite(what, flat)
    return flat.reshape(-1, width or 1) if ndim == 2 else flat, [int(a.shape[0]) for a in arrays]


def _offsets(lengths: list[int]) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32), pa.int32())


def read_generation(table: pa.Table) -> Outputs:
    """The :class:`Outputs` of a generation table (raises ``KeyError``/``ValueError`` when malformed)."""
    names = table.column_names
    refs = [tuple(r or ()) for r in table.column("references").to_pylist()]
    data = GenerationData(
        generations=np.asarray(table.column("generation").to_pylist(), dtype=object),
        references=refs,
        prompts=np.asarray(table.column("prompt").to_pylist(), dtype=object) if "prompt" in names else None,
        reference_nll=(table.column("reference_nll").to_numpy().astype(np.float64)
                       if "reference_nll" in names else None))
    if "reference_token_logprobs" in names:
        arr = table.column("reference_token_logprobs").combine_chunks()
        data.token_offsets = np.asarray(arr.offsets, np.int64) - int(arr.offsets[0].as_py())
        data.reference_token_logprobs = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.float32)
    if "topk_token_ids" in names and "topk_logprobs" in names:
        ids_arr = table.column("topk_token_ids").combine_chunks()
        lp_arr = table.column("topk_logprobs").combine_chunks()
        k = ids_arr.type.value_type.list_size
        data.token_offsets = np.asarray(ids_arr.offsets, np.int64) - int(ids_arr.offsets[0].as_py())
        data.topk_token_ids = np.asarray(ids_arr.flatten().flatten().to_numpy(zero_copy_only=False),
                                         np.int64).reshape(-1, k)
        data.topk_logprobs = np.asarray(lp_arr.flatten().flatten().to_numpy(zero_copy_only=False),
                                        np.float32).reshape(-1, k)
    scores = {c[len("score_"):]: table.column(c).to_numpy().astype(np.float64)
              for c in names if c.startswith("score_")}
    return kind_outputs(GENERATION, table.column("instance_id").to_pylist(), generation=data, scores=scores)
