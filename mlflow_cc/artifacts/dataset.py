"""The evaluation dataset, stored once per experiment in a dataset run: instance metadata, class names and previews.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.artifacts.files import artifact_path, get_run
from mlflow_cc.artifacts.tables import (
    _instance_ids,
    _label_array,
    _read_parquet,
    _require_finite,
)
from mlflow_cc.artifacts.upload import upload
from mlflow_cc.errors import ArtifactError

#: Parquet key-value metadata key holding the dataset's class names (JSON list).
CLASS_NAMES_KEY = b"mlflow_cc.class_names"


#: Largest side of an image preview, pixels; larger images are downscaled.
PREVIEW_MAX_SIDE = 64


def log_dataset(experiment_id: str, name: str, instances: pd.DataFrame,
                previews: pd.DataFrame | None = None, class_names: Sequence[str] | None = None,
                client: MlflowClient | None = None) -> str:
    """Store a dataset's instance metadata and previews once; return its dataset run id.

    ``instances``: columns ``instance_id``, ``label`` and optionally ``label_name`` and
    ``meta_<attribute>`` subgroup columns. ``previews``: ``instance_id``, ``kind``
    ("image"|"text"), ``value`` (base64 PNG, see :func:`image_preview`, or text).
    If the experiment already has a finished dataset run of this name, its id is
    returned and nothing is uploaded again.
    """
    client = client or MlflowClient()
    existing = find_dataset_run(client, experiment_id, name)
    if existing is not None:
        return existing
    table = _instances_table(instances, class_names)
    preview_table = _previews_table(previews) if previews is not None else None
    run = client.create_run(experiment_id, run_name=f"dataset: {name}", tags={
        contract.TAG_KIND: contract.KIND_DATASET, contract.TAG_DATASET: name,
        contract.TAG_SCHEMA: str(contract.SCHEMA_VERSION)})
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="mlflow-cc-") as tmp:
            folder = Path(tmp) / posixpath.basename(posixpath.dirname(contract.ARTIFACT_DATASET_INSTANCES))
            folder.mkdir()
            pq.write_table(table, folder / posixpath.basename(contract.ARTIFACT_DATASET_INSTANCES))
            if preview_table is not None:
                pq.write_table(preview_table, folder / posixpath.basename(contract.ARTIFACT_DATASET_PREVIEWS),
                               row_group_size=4096)
            upload(client, run_id, str(folder), posixpath.dirname(contract.ARTIFACT_DATASET_INSTANCES),
                   folder=True)
    except BaseException:
        # A half-made dataset run would be found and trusted by the next writer: remove it.
        client.delete_run(run_id)
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def find_dataset_run(client: MlflowClient, experiment_id: str, name: str) -> str | None:
    """The id of the experiment's finished dataset run called ``name`` (oldest first), or None."""
    quoted = name.replace("'", "\\'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{contract.TAG_KIND}` = '{contract.KIND_DATASET}' and "
                       f"tags.`{contract.TAG_DATASET}` = '{quoted}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0].info.run_id if runs else None


def image_preview(array: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> str:
    """A small PNG thumbnail of an image, base64-encoded (ASCII).

    ``array``: (H, W) grey or (H, W, 3|4) colour, any numeric range (scaled min..max to
    0..255, so an 8x8 digit with values 0..16 shows with full contrast). Images larger
    than ``max_side`` pixels on a side are downscaled. Needs Pillow.
    """
    from PIL import Image  # only the writer of previews needs Pillow

    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ValueError(f"image preview needs an (H, W) or (H, W, 3|4) array, not {arr.shape}")
    _require_finite("image", arr)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255.0
    image = Image.fromarray(np.round(scaled).astype(np.uint8))
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Preview:
    """How to show one instance: ``kind`` "image" (``value`` base64 PNG) or "text"."""

    instance_id: str
    kind: str
    value: str


class DatasetInfo:
    """A dataset run's instances table and class names; previews fetched on demand.

    Previews stay on the server: :meth:`preview` and :meth:`previews` look up the few
    ids a page shows. The previews file is read once, on first use.
    """

    def __init__(self, run_id: str, name: str, instances: pd.DataFrame, class_names: list[str],
                 previews_file: Path | None) -> None:
        self.run_id = run_id
        self.name = name
        self.instances = instances
        self.class_names = class_names
        self._previews_file = previews_file
        self._previews: dict[str, Preview] | None = None

    @property
    def subgroup_columns(self) -> list[str]:
        """The ``meta_<attribute>`` columns of :attr:`instances`."""
        return [c for c in self.instances.columns if c.startswith("meta_")]

    @property
    def previews_path(self) -> Path | None:
        """The local previews file, None when the dataset has no previews."""
        return self._previews_file

    def preview(self, instance_id: str) -> Preview | None:
        """The preview of one instance, or None when the dataset has none for it."""
        return self._load_previews().get(str(instance_id))

    def previews(self, instance_ids: Sequence[str]) -> dict[str, Preview]:
        """Previews of the given instances that exist, by id."""
        lookup = self._load_previews()
        return {str(i): lookup[str(i)] for i in instance_ids if str(i) in lookup}

    def _load_previews(self) -> dict[str, Preview]:
        if self._previews is None:
            if self._previews_file is None:
                self._previews = {}
            else:
                table = _read_parquet(self._previews_file, "previews", ("instance_id", "kind", "value"))
                cols = [table.column(c).to_pylist() for c in ("instance_id", "kind", "value")]
                self._previews = {i: Preview(i, k, v) for i, k, v in zip(*cols)}
        return self._previews


def load_dataset(client: MlflowClient, dataset_run_id: str) -> DatasetInfo:
    """Read a dataset run's instances and class names; previews load on first lookup."""
    run = get_run(client, dataset_run_id)
    path = artifact_path(client, dataset_run_id, contract.ARTIFACT_DATASET_INSTANCES, run=run)
    table = _read_parquet(path, f"instances of dataset run {dataset_run_id}", ("instance_id",))
    raw_names = (table.schema.metadata or {}).get(CLASS_NAMES_KEY)
    try:
        class_names = [str(c) for c in json.loads(raw_names)] if raw_names else []
    except ValueError:
        raise ArtifactError(f"class names of dataset run {dataset_run_id} are not JSON", "unreadable") from None
    try:
        previews_file: Path | None = artifact_path(client, dataset_run_id, contract.ARTIFACT_DATASET_PREVIEWS,
                                                   run=run)
    except ArtifactError as exc:
        if exc.reason != "not logged":
            raise
        previews_file = None  # previews are optional
    name = run.data.tags.get(contract.TAG_DATASET, dataset_run_id)
    return DatasetInfo(dataset_run_id, name, table.to_pandas(), class_names, previews_file)


def _instances_table(instances: pd.DataFrame, class_names: Sequence[str] | None) -> pa.Table:
    if "instance_id" not in instances.columns:
        raise ValueError("dataset instances need an 'instance_id' column")
    df = instances.reset_index(drop=True).copy()
    df["instance_id"] = _instance_ids(df["instance_id"].tolist())
    n = len(df)
    df["label"] = _label_array(df["label"] if "label" in df.columns else None, n).to_pandas().astype("Int64")
    names = [str(c) for c in class_names] if class_names is not None else []
    if "label_name" not in df.columns and names:
        df["label_name"] = [names[v] if v is not pd.NA and 0 <= v < len(names) else None
                            for v in df["label"].tolist()]
    table = pa.Table.from_pandas(df, preserve_index=False)
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          CLASS_NAMES_KEY: json.dumps(names).encode()})


def _previews_table(previews: pd.DataFrame) -> pa.Table:
    missing = [c for c in ("instance_id", "kind", "value") if c not in previews.columns]
    if missing:
        raise ValueError(f"previews lack columns {missing}")
    kinds = set(previews["kind"].astype(str))
    if not kinds <= {"image", "text"}:
        raise ValueError(f"preview kind must be 'image' or 'text', not {sorted(kinds - {'image', 'text'})}")
    return pa.table({
        "instance_id": pa.array(_instance_ids(previews["instance_id"].tolist()), pa.string()),
        "kind": pa.array(previews["kind"].astype(str).tolist(), pa.string()),
        "value": pa.array(previews["value"].astype(str).tolist(), pa.string()),
    })
