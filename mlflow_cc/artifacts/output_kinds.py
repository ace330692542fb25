"""What a read ``outputs.parquet`` holds, for every kind (:data:`~mlflow_cc.contract.OUTPUT_KINDS`),
and the one write path the kinds' writers share (schema metadata, run tags, complete-or-absent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.artifacts.tables import _log_table, _require_finite

CLASSIFICATION, GENERATION, REGRESSION, EMBEDDING = contract.OUTPUT_KINDS


@dataclass
class GenerationData:
    """A generative model's outputs, aligned by row with :attr:`Outputs.instance_ids`.

    Token arrays are concatenated over instances: instance ``i`` owns rows
    ``token_offsets[i]:token_offsets[i + 1]`` (one row per reference token, teacher forced).
    """

    generations: np.ndarray  # (N,) object: the generated text
    references: list[tuple[str, ...]]  # per instance, at least one
    prompts: np.ndarray | None = None  # (N,) object or None
    reference_nll: np.ndarray | None = None  # (N,) float64 mean per-token NLL of the reference
    token_offsets: np.ndarray | None = None  # (N + 1,) int64
    reference_token_logprobs: np.ndarray | None = None  # (T,) float32
    topk_token_ids: np.ndarray | None = None  # (T, k) int64
    topk_logprobs: np.ndarray | None = None  # (T, k) float32

    def tokens(self, i: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Instance ``i``'s (top-k ids, top-k log-probs), each (T_i, k), or Nones when not logged."""
        if self.token_offsets is None or self.topk_token_ids is None or self.topk_logprobs is None:
            return None, None
        a, b = int(self.token_offsets[i]), int(self.token_offsets[i + 1])
        return self.topk_token_ids[a:b], self.topk_logprobs[a:b]


@dataclass
class Outputs:
    """A model's per-instance outputs, as numpy arrays aligned by row.

    ``kind`` is one of :data:`~mlflow_cc.contract.OUTPUT_KINDS` ("classification" for
    version-1 files). Classification: ``labels`` uses -1 for an unknown label, ``logits`` is
    (N, K) float32. Other kinds keep ``labels`` at -1, ``predictions`` at 0 and ``logits`` (N, 0),
    and fill ``generation`` (generation), ``values``/``targets`` (regression: float64, target NaN
    = unknown) or ``vectors`` ((N, D) float32, embedding).
    """

    instance_ids: np.ndarray  # (N,) str: object, or fixed-width unicode as read from a file
    labels: np.ndarray  # (N,) int64, -1 = unknown
    predictions: np.ndarray  # (N,) int64
    logits: np.ndarray  # (N, K) float32
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) float64
    dataset: str | None = None
    dataset_run_id: str | None = None
    kind: str = CLASSIFICATION
    generation: GenerationData | None = None
    values: np.ndarray | None = None
    targets: np.ndarray | None = None
    vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.instance_ids)

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


def kind_outputs(kind: str, ids: list[str] | np.ndarray, **fields: object) -> Outputs:
    """An :class:`Outputs` of a non-classification kind (class fields empty)."""
    n = len(ids)
    return Outputs(instance_ids=np.asarray(ids, dtype=object), labels=np.full(n, -1, np.int64),
                   predictions=np.zeros(n, np.int64), logits=np.zeros((n, 0), np.float32), kind=kind,
                   **fields)  # type: ignore[arg-type]


def score_columns(scores: Mapping[str, np.ndarray] | None, n: int, allow_nonfinite: bool,
                  taken: tuple[str, ...] = ()) -> dict[str, pa.Array]:
    """Per-instance user scores as ``score_<name>`` float64 columns, validated."""
    out: dict[str, pa.Array] = {}
    for name, values in (scores or {}).items():
        if not isinstance(name, str) or not name or "|" in name:
            raise ValueError(f"score names must be non-empty strings without '|': {name!r}")
        if name in taken:
            raise ValueError(f"score {name!r} is computed by mlflow-cc at capture time; choose another name")
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(f"score {name!r} must have shape ({n},), not {arr.shape}")
        if not allow_nonfinite:
            _require_finite(f"score {name!r}", arr)
        out[f"score_{name}"] = pa.array(arr, pa.float64())
    return out


def write_outputs(client: MlflowClient, run_id: str, kind: str, columns: Mapping[str, pa.Array],
                  dataset: str | None, dataset_run_id: str | None) -> None:
    """Write ``columns`` as the run's outputs (with the kind in the file's metadata), then the tags."""
    metadata = {contract.OUTPUTS_META_KIND: kind, contract.OUTPUTS_META_VERSION: str(contract.OUTPUTS_SCHEMA_VERSION),
                contract.OUTPUTS_META_IDS: ids_digest(columns["instance_id"])}
    _log_table(client, run_id, contract.ARTIFACT_OUTPUTS, pa.table(dict(columns), metadata=metadata))
    tags = {contract.TAG_OUTPUT_KIND: kind, contract.TAG_DATASET: dataset, contract.TAG_DATASET_RUN: dataset_run_id}
    for key, value in tags.items():
        if value:
            client.set_tag(run_id, key, value)


def ids_digest(ids: pa.Array) -> str:
    """A fingerprint of an id column: BLAKE2b of where each id ends and of the ids' UTF-8 bytes.

    Written in the file's metadata: twelve models' outputs on the same million instances share one
    id column in memory, decoded once (:func:`~mlflow_cc.artifacts.outputs.load_outputs`).
    """
    arr = ids.cast(pa.large_string())
    _, offsets, data = arr.buffers()
    ends = np.frombuffer(offsets, np.int64, len(arr) + 1, arr.offset * 8) if offsets is not None else np.zeros(1)
    digest = hashlib.blake2b(digest_size=16)
    digest.update((ends - ends[0]).astype("<i8").tobytes())
    if data is not None:
        digest.update(memoryview(data)[int(ends[0]):int(ends[-1])])
    return digest.hexdigest()


def table_kind(schema: pa.Schema) -> str:
    """The outputs kind a file's schema metadata names ("classification" for version-1 files).

    Raises ``ValueError`` for a kind this version does not know.
    """
    raw = (schema.metadata or {}).get(contract.OUTPUTS_META_KIND.encode())
    kind = raw.decode("utf-8", "replace") if raw else CLASSIFICATION
    if kind not in contract.OUTPUT_KINDS:
        raise ValueError(f"unknown outputs kind {kind!r} (this version reads {', '.join(contract.OUTPUT_KINDS)})")
    return kind


def file_kind(path: str) -> str:
    """The kind of an outputs file, from its schema only (no column is read)."""
    return table_kind(pq.read_schema(path))
