"""A dataset's previews, looked up a page at a time: only the ids are read up front.

A million previews (thumbnails, text snippets) are hundreds of MB once decoded, and a
page shows a hundred. :class:`PreviewIndex` reads the previews file's ``instance_id``
column once (Arrow, no Python object per row); a lookup finds the requested ids in it
(``pyarrow.compute.is_in``, hashing only the page's ids) and decodes only the Parquet
row groups that hold them (recently used groups are kept).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cachetools import LRUCache
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.artifacts.files import artifact_path
from mlflow_cc.errors import ArtifactError

COLUMNS = ["instance_id", "kind", "value"]
#: Decoded row groups kept (a page usually touches one or two).
KEEP_GROUPS = 16


class PreviewIndex:
    """(kind, value) previews of a dataset run's instances, by id."""

    def __init__(self, client: MlflowClient, dataset_run_id: str, path: Path | None = None) -> None:
        """``path``: the previews file when already known (:attr:`DatasetInfo.previews_path`)."""
        self._client = client
        self._run_id = dataset_run_id
        self._path = path
        self._lock = threading.Lock()
        self._loaded = False
        self._file: pq.ParquetFile | None = None
        self._ids: pa.Array | None = None
        self._starts = np.zeros(1, np.int64)
        self._groups: LRUCache[int, pa.Table] = LRUCache(maxsize=KEEP_GROUPS)

    def lookup(self, instance_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(kind, value) by id for the ids that have a preview."""
        with self._lock:
            self._load()
            if self._ids is None or not len(instance_ids) or not len(self._ids):
                return {}
            wanted = pa.array([str(i) for i in instance_ids], self._ids.type)
            rows = np.flatnonzero(pc.is_in(self._ids, value_set=wanted).to_numpy(zero_copy_only=False))
            out: dict[str, tuple[str, str]] = {}
            groups = np.searchsorted(self._starts, rows, side="right") - 1
            for group in np.unique(groups):
                table = self._group(int(group))
                here = rows[groups == group]
                picked = table.take(pa.array(here - self._starts[group], pa.int64()))
                ids = self._ids.take(pa.array(here, pa.int64()))  # the ids are known: not decoded again
                for i, k, v in zip(ids.to_pylist(), picked.column("kind").to_pylist(),
                                   picked.column("value").to_pylist()):
                    out.setdefault(str(i), (str(k), str(v)))
            return out

    def _group(self, group: int) -> pa.Table:
        hit = self._groups.get(group)
        if hit is None:
            assert self._file is not None
            hit = self._file.read_row_group(group, columns=COLUMNS[1:])
            self._groups[group] = hit
        return hit

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            path = self._path or artifact_path(self._client, self._run_id, contract.ARTIFACT_DATASET_PREVIEWS)
            pf = pq.ParquetFile(path, memory_map=True)  # pages decoded from the page cache, not copied first
            missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
            if missing:
                raise KeyError(missing)
            ids = pf.read(columns=["instance_id"]).column("instance_id").combine_chunks()
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
        except (ArtifactError, pa.ArrowException, OSError, KeyError):
            return  # previews are optional: none shown
        self._file, self._ids = pf, ids
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
