"""Behaviours of logged runs: read the outputs of a base and several models (and the base's
dataset) from a store, then compare them (:func:`compare_behaviour_runs`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from mlflow.tracking import MlflowClient

from mlflow_cc.analysis.behaviour_columns import same_ids
from mlflow_cc.analysis.behaviours import Behaviours, compare_behaviours
from mlflow_cc.artifacts import DatasetInfo, Outputs, load_dataset, load_outputs
from mlflow_cc.errors import ArtifactError

#: Outputs artifacts read at once.
READERS = max(1, min(4, os.cpu_count() or 1))


def share_base_arrays(out: Outputs, base: Outputs) -> None:
    """Let ``out`` hold the base's instance-id and label arrays when they are equal (memory, not meaning).

    Twelve models on a million instances would otherwise keep twelve copies of the same ids.
    """
    if same_ids(out.instance_ids, base.instance_ids):  # often one array already (see load_outputs)
        out.instance_ids = base.instance_ids
        if out.labels is not base.labels and np.array_equal(out.labels, base.labels):
            out.labels = base.labels


@dataclass
class LoadedOutputs:
    """Outputs of a base and several models, read from a store, with their dataset.

    ``models`` excludes the base; ``unavailable``: run id -> reason ("not logged",
    "unreadable", "too large") for every run (the base included) whose outputs could not be
    read; ``dataset_note`` says why a named dataset could not be read ("" if it was).
    """

    base: Outputs | None
    models: dict[str, Outputs]
    unavailable: dict[str, str]
    dataset: DatasetInfo | None = None
    dataset_run_id: str | None = None
    dataset_note: str = ""
    base_error: ArtifactError | None = None


def load_compared_outputs(client: MlflowClient, base_run_id: str, run_ids: Sequence[str], *,
                          datasets: Mapping[str, str] | None = None,
                          load: Callable[[str], Outputs] | None = None) -> LoadedOutputs:
    """Read the outputs of ``base_run_id`` and ``run_ids`` and the base's dataset (the one loader).

    ``datasets``: dataset name -> dataset run id, used when the base's outputs do not name their
    dataset run. ``load(run_id)``: how to read one run's outputs (default :func:`load_outputs`;
    a cache may be passed); it raises :class:`ArtifactError`.
    """
    read = load or (lambda rid: load_outputs(client, rid))
    outputs: dict[str, Outputs] = {}
    unavailable: dict[str, str] = {}
    base_error: ArtifactError | None = None
    wanted = list(dict.fromkeys([base_run_id, *run_ids]))
    base_out: list[Outputs] = []

    def one(run_id: str) -> Outputs | ArtifactError:
        try:
            out = read(run_id)
        except ArtifactError as exc:
            return exc
        if base_out and run_id != base_run_id:
            share_base_arrays(out, base_out[0])
        return out

    first = one(base_run_id)  # first, so that the models can share its arrays as they arrive
    dataset_run_id = None
    if isinstance(first, Outputs):
        base_out.append(first)
        dataset_run_id = first.dataset_run_id or (datasets or {}).get(first.dataset or "")

    def dataset() -> DatasetInfo | ArtifactError | None:
        try:
            return load_dataset(client, dataset_run_id) if dataset_run_id else None
        except ArtifactError as exc:
            return exc

    # The models' artifacts (and the base's dataset) are read in parallel (Parquet decoding releases
    # the GIL), the models in order.
    rest = wanted[1:]
    with ThreadPoolExecutor(max(1, min(READERS, len(rest) + 1)), thread_name_prefix="mlflow-cc-outputs") as pool:
        got_dataset = pool.submit(dataset)
        results = [first, *pool.map(one, rest)]
        read_dataset = got_dataset.result()
    for run_id, got in zip(wanted, results):
        if isinstance(got, ArtifactError):
            unavailable[run_id] = got.reason
            if run_id == base_run_id:
                base_error = got
        else:
            outputs[run_id] = got
    base = outputs.pop(base_run_id, None)
    loaded = LoadedOutputs(base, outputs, unavailable, base_error=base_error)
    if base is None:
        return loaded
    loaded.dataset_run_id = dataset_run_id
    if isinstance(read_dataset, ArtifactError):
        loaded.dataset_note = (f"dataset {base.dataset or dataset_run_id}: {read_dataset.reason}; "
                               "no subgroups or names")
    else:
        loaded.dataset = read_dataset
    return loaded


def compare_behaviour_runs(client: MlflowClient, base_run_id: str, run_ids: Sequence[str], *,
                           metrics: Sequence[str] | None = None) -> Behaviours:
    """:func:`compare_behaviours` over runs' logged outputs, keyed by run id.

    The dataset (subgroups, class names, previews) comes from the base's dataset run. A
    model whose outputs are not logged or unreadable is left out and listed in
    ``unavailable`` with the reason; a base without outputs raises :class:`ArtifactError`.
    """
    loaded = load_compared_outputs(client, base_run_id, run_ids)
    if loaded.base is None:
        raise loaded.base_error or ArtifactError(f"outputs of run {base_run_id} are not logged", "not logged")
    dataset = loaded.dataset
    result = compare_behaviours(loaded.base, loaded.models, base_key=base_run_id, metrics=metrics,
                                dataset=dataset.instances if dataset else None,
                                class_names=dataset.class_names if dataset else None)
    result.unavailable, result.dataset = loaded.unavailable, dataset
    if loaded.dataset_note:
        result.notes[base_run_id].append(loaded.dataset_note)
    return result
