"""Behaviours of generation, regression and embedding outputs: their metrics and the comparison.

:func:`~mlflow_cc.analysis.behaviours.compare_behaviours` hands a base whose outputs are not
classification to :func:`compare_kind_behaviours`. The result is a :class:`KindBehaviours` (a
:class:`~mlflow_cc.analysis.behaviours.Behaviours`: same wide instance table, aggregates per
subgroup and overall, absolute or relative to base, paging), with these built-in metrics:

==========  =================  =============================================================  ======
kind        metric             per instance                                                   better
==========  =================  =============================================================  ======
generation  exact_match        normalized answer equals a reference (stored at capture)       higher
generation  f1                 token F1 of the answer against the best reference (stored)     higher
generation  answer_changed     1 if the normalized answer differs from the base's             lower
generation  nll                mean NLL per reference token, teacher forced (stored)          lower
generation  perplexity         exp(nll)                                                       lower
generation  divergence         approximate KL(base || model) of next-token distributions,     lower
                               mean over reference positions (:mod:`.generation_metrics`)
regression  abs_error          abs(prediction - target)                                       lower
regression  signed_error       prediction - target                                            lower
regression  prediction_change  abs(prediction - base prediction)                              lower
embedding   cosine_to_base     cosine similarity of the vector to the base's                  higher
embedding   l2_to_base         Euclidean distance of the vector to the base's                 lower
==========  =================  =============================================================  ======

Every other per-instance score a run stored (``scores=`` of the writers) is a metric too, under
its own name (higher is better). Users add metrics with ``register_metric(..., kind=...)``:
``fn(base, model)`` gets two :class:`KindArrays`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from mlflow_cc.analysis.behaviour_metrics import (
    _KIND_REGISTRY,
    BehaviourMetric,
    register_metric,
)
from mlflow_cc.analysis.behaviours import Behaviours, column, join_dataset
from mlflow_cc.analysis.generation_metrics import instance_divergence
from mlflow_cc.artifacts import Outputs, normalize_answer

#: Instance-table column prefix of each model's answer text (generation) or value text (regression).
ANSWER = "answer"


@dataclass(frozen=True)
class KindArrays:
    """One model's outputs aligned to the base's instances (rows the model lacks: NaN / None).

    ``rows``: each instance's row in ``outputs`` (0 where not ``valid``). Generation: ``texts``
    (the answers) and ``normalized`` (see :func:`~mlflow_cc.artifacts.normalize_answer`),
    ``nll``; regression: ``values``, ``targets``; embedding: ``vectors`` (N, D).
    """

    kind: str
    valid: np.ndarray
    rows: np.ndarray
    outputs: Outputs
    scores: dict[str, np.ndarray]
    texts: np.ndarray | None = None
    normalized: np.ndarray | None = None
    nll: np.ndarray | None = None
    values: np.ndarray | None = None
    targets: np.ndarray | None = None
    vectors: np.ndarray | None = None


def _nan(model: KindArrays) -> np.ndarray:
    return np.full(len(model.valid), np.nan)


def _score(name: str) -> Callable[[KindArrays, KindArrays], np.ndarray]:
    def fn(base: KindArrays, model: KindArrays) -> np.ndarray:
        return model.scores.get(name, _nan(model))
    return fn


def _answer_changed(base: KindArrays, model: KindArrays) -> np.ndarray:
    if base.normalized is None or model.normalized is None:
        return _nan(model)
    return np.where(base.valid & model.valid, (base.normalized != model.normalized).astype(np.float64), np.nan)


def _nll(base: KindArrays, model: KindArrays) -> np.ndarray:
    return model.nll if model.nll is not None else _nan(model)


def _perplexity(base: KindArrays, model: KindArrays) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(_nll(base, model))


def _divergence(base: KindArrays, model: KindArrays) -> np.ndarray:
    b, m = base.outputs.generation, model.outputs.generation
    if b is None or m is None or b.token_offsets is None or m.token_offsets is None \
            or b.topk_token_ids is None or m.topk_token_ids is None \
            or b.topk_logprobs is None or m.topk_logprobs is None:
        return _nan(model)
    return instance_divergence(b.token_offsets, b.topk_token_ids, b.topk_logprobs, base.rows,
                               m.token_offsets, m.topk_token_ids, m.topk_logprobs, model.rows,
                               base.valid & model.valid)


def _signed_error(base: KindArrays, model: KindArrays) -> np.ndarray:
    if model.values is None or model.targets is None:
        return _nan(model)
    return model.values - model.targets


def _abs_error(base: KindArrays, model: KindArrays) -> np.ndarray:
    return np.abs(_signed_error(base, model))


def _prediction_change(base: KindArrays, model: KindArrays) -> np.ndarray:
    if model.values is None or base.values is None:
        return _nan(model)
    return np.abs(model.values - base.values)


def _cosine(base: KindArrays, model: KindArrays) -> np.ndarray:
    if base.vectors is None or model.vectors is None or base.vectors.shape[1] != model.vectors.shape[1]:
        return _nan(model)
    dot = np.einsum("ij,ij->i", base.vectors, model.vectors)
    norms = np.linalg.norm(base.vectors, axis=1) * np.linalg.norm(model.vectors, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dot / norms, np.nan)


def _l2(base: KindArrays, model: KindArrays) -> np.ndarray:
    if base.vectors is None or model.vectors is None or base.vectors.shape[1] != model.vectors.shape[1]:
        return _nan(model)
    return np.linalg.norm(model.vectors - base.vectors, axis=1)


_BUILTINS: list[tuple[str, str, Any, bool, str]] = [
    ("generation", "exact_match", _score("exact_match"), True, "normalized answer equals a reference"),
    ("generation", "f1", _score("f1"), True, "token F1 against the best reference"),
    ("generation", "answer_changed", _answer_changed, False, "normalized answer differs from the base's"),
    ("generation", "nll", _nll, False, "mean negative log-likelihood per reference token, nats"),
    ("generation", "perplexity", _perplexity, False, "exp(mean NLL of the reference)"),
    ("generation", "divergence", _divergence, False,
     "approximate KL(base || model) of next-token distributions (top-k union + other bucket), nats"),
    ("regression", "abs_error", _abs_error, False, "absolute error to the target"),
    ("regression", "signed_error", _signed_error, False, "prediction minus target"),
    ("regression", "prediction_change", _prediction_change, False, "absolute change of the prediction vs the base"),
    ("embedding", "cosine_to_base", _cosine, True, "cosine similarity to the base's vector"),
    ("embedding", "l2_to_base", _l2, False, "Euclidean distance to the base's vector"),
]
for _kind, _name, _fn, _better, _text in _BUILTINS:
    register_metric(_name, _fn, higher_is_better=_better, description=_text, kind=_kind, replace=True)
#: Scores that are built-in metrics of their kind already.
_SCORE_METRICS = {"exact_match", "f1"}


@dataclass
class KindBehaviours(Behaviours):
    """:class:`Behaviours` of generation, regression or embedding outputs (see the module doc)."""

    kind: str = "generation"
    _kind_arrays: dict[str, KindArrays] = field(default_factory=dict, repr=False)

    def prediction_changes(self, top: int = 10) -> pd.DataFrame:
        """Generation: the most frequent base answer → model answer changes per model (normalized
        answers differ; shown as generated, whitespace collapsed). Other kinds: none."""
        cols = ["model", "base_prediction", "model_prediction", "count", "fraction",
                "base_prediction_name", "model_prediction_name"]
        base = self._kind_arrays[self.base]
        rows: list[dict[str, Any]] = []
        if self.kind == "generation" and base.texts is not None:
            for key in self.models[1:]:
                model = self._kind_arrays[key]
                if model.texts is None:
                    continue
                both = base.valid & model.valid
                changed = both & (_answer_changed(base, model) == 1)
                if not changed.any():
                    continue
                pairs = pd.DataFrame({"b": [" ".join(str(t).split()) for t in base.texts[changed]],
                                      "m": [" ".join(str(t).split()) for t in model.texts[changed]]})
                counts = pairs.value_counts(sort=False).reset_index(name="count")
                counts = counts.sort_values("count", ascending=False, kind="stable").head(top)
                total = max(int(both.sum()), 1)
                rows += [{"model": key, "base_prediction": -1, "model_prediction": -1, "count": int(r.count),
                          "fraction": r.count / total, "base_prediction_name": r.b, "model_prediction_name": r.m}
                         for r in counts.itertuples(index=False)]
        return pd.DataFrame(rows, columns=cols)

    def _group_value(self, spec: BehaviourMetric, key: str, rows: np.ndarray) -> float:
        if not rows.any():
            return float("nan")
        return float(spec.fn(_subset(self._kind_arrays[self.base], rows), _subset(self._kind_arrays[key], rows)))


def compare_kind_behaviours(base: Outputs, models: Mapping[str, Outputs], *, base_key: str = "base",
                            dataset: pd.DataFrame | None = None,
                            metrics: Sequence[str] | None = None) -> KindBehaviours:
    """The behaviour metrics of ``models`` against ``base``, whose outputs are of one kind
    (generation, regression or embedding). A model of another kind is compared on nothing (a note
    says why). ``metrics``: names among the kind's registered metrics and the stored scores."""
    kind = base.kind
    ids = np.asarray(base.instance_ids, dtype=object)
    n = len(ids)
    table = join_dataset(ids, np.full(n, -1, np.int64), dataset)
    keys = [base_key] + [k for k in models if k != base_key]
    index = pd.Index(ids)
    arrays = {base_key: _aligned(base, ids, index)}
    missing, extra, notes = {base_key: 0}, {base_key: 0}, {base_key: []}
    for key in keys[1:]:
        out = models[key]
        notes[key] = []
        other_kind = out.kind != kind
        if other_kind:
            notes[key].append(f"outputs are {out.kind}, the base's are {kind}: not compared")
            out = Outputs(np.asarray([], dtype=object), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros((0, 0), np.float32), kind=kind)
        arrays[key] = _aligned(out, ids, index)
        missing[key] = int(n - arrays[key].valid.sum())
        extra[key] = int(len(out) - arrays[key].valid.sum())
        if missing[key] and not other_kind:
            notes[key].append(f"{missing[key]} of the base's {n} instances are missing")
    if kind == "regression":
        truth = arrays[base_key].targets
        for key in keys[1:]:  # one truth: the base's target where a model has none
            t = arrays[key].targets
            if t is not None and truth is not None:
                arrays[key] = _replace(arrays[key], targets=np.where(np.isnan(t), truth, t))
    chosen = _kind_metrics(kind, [models[k] for k in keys[1:]] + [base], metrics)
    _text_columns(table, kind, base, arrays[base_key])
    for key in keys:
        a = arrays[key]
        table[column("prediction", key)] = a.values if a.values is not None else np.full(n, np.nan)
        if a.texts is not None:
            table[column(ANSWER, key)] = a.texts
        for name, spec in chosen.items():
            if spec.per_instance:
                values = np.asarray(spec.fn(arrays[base_key], a), dtype=np.float64)
                if values.shape != (n,):
                    raise ValueError(f"metric {name!r} returned shape {values.shape}, expected ({n},)")
                table[column(name, key)] = np.where(a.valid, values, np.nan)
    return KindBehaviours(base=base_key, models=keys, metrics=chosen, instances=pd.DataFrame(table),
                          missing=missing, extra=extra, notes=notes, kind=kind, _kind_arrays=arrays)


def _kind_metrics(kind: str, outputs: Sequence[Outputs], wanted: Sequence[str] | None) -> dict[str, BehaviourMetric]:
    chosen = dict(_KIND_REGISTRY[kind])
    for out in outputs:
        for score in out.scores:
            if score in _SCORE_METRICS or out.kind != kind:
                continue
            name = score if score not in _KIND_REGISTRY[kind] else f"score_{score}"
            chosen.setdefault(name, BehaviourMetric(name, _score(score), True, True, f"stored score {score!r}", kind))
    if wanted:
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    return chosen


def _aligned(out: Outputs, ids: np.ndarray, index: pd.Index) -> KindArrays:
    n = len(ids)
    pos = index.get_indexer(np.asarray(out.instance_ids, dtype=object)) if len(out) else np.zeros(0, np.int64)
    rows = np.zeros(n, np.int64)
    rows[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
    valid = np.zeros(n, bool)
    valid[pos[pos >= 0]] = True

    def floats(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        return np.where(valid, np.asarray(values, np.float64)[rows] if len(values) else np.nan, np.nan)

    scores = {k: floats(v) for k, v in out.scores.items()}
    fields_: dict[str, Any] = {}
    gen = out.generation
    if gen is not None:
        texts = np.where(valid, gen.generations[rows] if len(gen.generations) else None, None)
        norm = {t: normalize_answer(t) for t in set(texts.tolist()) if t is not None}  # answers repeat
        fields_.update(texts=texts, normalized=np.array([norm.get(t) if t is not None else None for t in texts],
                                                        dtype=object),
                       nll=floats(gen.reference_nll) if gen.reference_nll is not None else None)
    elif out.kind == "generation":
        fields_.update(texts=np.full(n, None, dtype=object), normalized=np.full(n, None, dtype=object))
    if out.kind == "regression":
        fields_.update(values=floats(out.values if out.values is not None else np.zeros(0)),
                       targets=floats(out.targets if out.targets is not None else np.zeros(0)))
    if out.kind == "embedding":
        width = out.vectors.shape[1] if out.vectors is not None else 0
        vectors = np.full((n, width), np.nan, np.float32)
        if out.vectors is not None and len(out.vectors):
            vectors[valid] = out.vectors[rows[valid]]
        fields_["vectors"] = vectors
    return KindArrays(out.kind, valid, rows, out, {k: v for k, v in scores.items() if v is not None}, **fields_)


def _text_columns(table: dict[str, Any], kind: str, base: Outputs, arrays: KindArrays) -> None:
    """The base's prompt and reference (generation) or target (regression) per instance."""
    gen = base.generation
    if kind == "generation" and gen is not None:
        table["reference"] = np.array([" | ".join(r) for r in gen.references], dtype=object)
        table["prompt"] = gen.prompts if gen.prompts is not None else np.full(len(gen.references), None, object)
    elif kind == "regression" and arrays.targets is not None:
        table["target"] = arrays.targets


def _replace(arrays: KindArrays, **changes: Any) -> KindArrays:
    return KindArrays(**{f.name: changes.get(f.name, getattr(arrays, f.name)) for f in fields(KindArrays)})


def _subset(arrays: KindArrays, rows: np.ndarray) -> KindArrays:
    def cut(v: Any) -> Any:
        return v[rows] if isinstance(v, np.ndarray) else v
    return KindArrays(**{f.name: ({k: cut(x) for k, x in v.items()} if isinstance(v := getattr(arrays, f.name), dict)
                                  else cut(v)) for f in fields(KindArrays)})


def instance_text_columns(behaviours: Behaviours, rows: pd.DataFrame, models: Sequence[str]) -> dict[str, np.ndarray]:
    """Text columns of instance rows for a grid: ``name`` (the reference or target), ``prompt``, and
    ``t<i>`` per model (its answer, or its value as text; None where it has none)."""
    n = len(rows)
    out: dict[str, np.ndarray] = {}
    if "reference" in rows.columns:
        out["name"] = rows["reference"].astype(str).to_numpy()
    elif "target" in rows.columns:
        out["name"] = np.array(["–" if not np.isfinite(v) else f"{v:.4g}" for v in rows["target"].to_numpy(float)],
                               dtype=object)
    else:
        out["name"] = np.full(n, "", dtype=object)
    if "prompt" in rows.columns:
        out["prompt"] = rows["prompt"].to_numpy(object)
    kind = getattr(behaviours, "kind", "classification")
    for i, run_id in enumerate(models):
        col = column(ANSWER, run_id)
        if col in rows.columns:
            out[f"t{i}"] = rows[col].to_numpy(object)
        elif kind == "regression" and column("prediction", run_id) in rows.columns:
            values = rows[column("prediction", run_id)].to_numpy(float)
            out[f"t{i}"] = np.array([None if not np.isfinite(v) else f"{v:.4g}" for v in values], dtype=object)
        else:
            out[f"t{i}"] = np.full(n, None, dtype=object)
    return out
