"""Performance Comparison data: behaviours and layers of selected models against a base.

The read-side glue between the store and the app's comparison tables (no Dash here):

* :func:`default_base` picks the base model of a selection (closest to the root, then
  earliest logged);
* :func:`load_behaviour_set` reads every model's outputs, notes which models have none
  (and why), and computes :func:`~mlflow_cc.behaviours.compare_behaviours` against the
  base; :class:`BehaviourSet` then answers the table's questions (rows per class,
  subgroup or instance for one metric, absolute or relative; header summaries; the
  most frequent prediction changes) with server-side sort, filter and paging;
* :func:`load_layer_set` streams the layer comparison
  (:func:`~mlflow_cc.layer_compare.compare_layer_runs`) and :class:`LayerSet` turns it
  into the rows of a module tree (expanded modules, a name pattern, sorting by change);
* :class:`Comparisons` caches both, keyed by the run ids, the base and the kind, so the
  app computes a comparison once however often its tables are paged.
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.artifact_files import artifact_path
from mlflow_cc.artifact_io import DatasetInfo, Outputs, load_dataset, load_outputs
from mlflow_cc.behaviours import Behaviours, Page, column, compare_behaviours, page
from mlflow_cc.errors import ArtifactError
from mlflow_cc.layer_compare import (
    CHANGE_BUCKETS,
    STATUS_MISSING,
    STATUS_NEW,
    STATUS_SHAPE,
    LayerComparison,
    compare_layer_runs,
)
from mlflow_cc.lineage import Forest

ROW_MODES = ("classes", "subgroups", "instances")
LAYER_KINDS = ("weights", "activations")


def default_base(forest: Forest, run_ids: Iterable[str]) -> str | None:
    """The selected model closest to a root (smallest depth); ties: the earliest logged."""
    nodes = [forest.nodes[r] for r in run_ids if r in forest.nodes]
    if not nodes:
        return None
    return min(nodes, key=lambda n: (n.depth, n.start_time, n.run_id)).run_id


def ordered_models(forest: Forest, run_ids: Iterable[str], base: str) -> list[str]:
    """The base first, then the other selected models in tree (depth-first) order."""
    chosen = set(run_ids)
    rest = [n.run_id for n in forest.walk() if n.run_id in chosen and n.run_id != base]
    rest += sorted(r for r in chosen if r not in forest.nodes and r != base)
    return [base, *rest]


# =============================================================================
# Behaviours
# =============================================================================
@dataclass
class Drill:
    """Rows restricted to one class (``kind`` "class", ``value`` its index) or subgroup."""

    kind: str  # "class" | "subgroup"
    value: str
    attribute: str = ""  # the subgroup's attribute (without ``meta_``)

    @classmethod
    def parse(cls, text: str | None) -> Drill | None:
        """``class:3`` or ``subgroup:group=rare`` (the URL form); None for anything else."""
        if not text or ":" not in text:
            return None
        kind, _, rest = text.partition(":")
        if kind == "class" and rest.lstrip("-").isdigit():
            return cls("class", rest)
        if kind == "subgroup" and "=" in rest:
            attr, _, value = rest.partition("=")
            return cls("subgroup", value, attr)
        return None

    def text(self) -> str:
        return f"class:{self.value}" if self.kind == "class" else f"subgroup:{self.attribute}={self.value}"


class PreviewIndex:
    """A dataset's previews, looked up a page at a time without materializing every preview.

    The previews Parquet file is read once (Arrow columns, no Python objects per row);
    the instance ids are hashed once; a lookup then takes only the requested rows.
    """

    def __init__(self, client: MlflowClient, dataset_run_id: str) -> None:
        self._client = client
        self._run_id = dataset_run_id
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self._index: pd.Index | None = None

    def lookup(self, instance_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(kind, value) by id for the ids that have a preview."""
        table, index = self._load()
        if table is None or index is None or not len(instance_ids):
            return {}
        rows = index.get_indexer([str(i) for i in instance_ids])
        found = rows[rows >= 0]
        picked = table.take(pa.array(found, pa.int64()))
        ids = picked.column("instance_id").to_pylist()
        kinds = picked.column("kind").to_pylist()
        values = picked.column("value").to_pylist()
        return {i: (str(k), str(v)) for i, k, v in zip(ids, kinds, values)}

    def _load(self) -> tuple[pa.Table | None, pd.Index | None]:
        with self._lock:
            if self._table is None:
                try:
                    path = artifact_path(self._client, self._run_id, contract.ARTIFACT_DATASET_PREVIEWS)
                    table = pq.read_table(path, columns=["instance_id", "kind", "value"]).combine_chunks()
                except (ArtifactError, pa.ArrowException, OSError, KeyError):
                    table = pa.table({"instance_id": pa.array([], pa.string()), "kind": pa.array([], pa.string()),
                                      "value": pa.array([], pa.string())})
                self._table = table
                self._index = pd.Index(table.column("instance_id").to_numpy(zero_copy_only=False))
            return self._table, self._index


@dataclass
class BehaviourSet:
    """Behaviour metrics of ``models`` (run ids, base first) against ``base``.

    ``behaviours`` is None when the base itself has no readable outputs (``problem``
    says why); models without outputs are listed in ``unavailable`` with the reason
    ("not logged", "unreadable", "too large") and have empty columns.
    """

    base: str
    models: list[str]
    behaviours: Behaviours | None
    unavailable: dict[str, str] = field(default_factory=dict)
    dataset: DatasetInfo | None = None
    problem: str | None = None
    preview_index: PreviewIndex | None = None
    _tables: OrderedDict[tuple[Hashable, ...], pd.DataFrame] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def metrics(self) -> list[str]:
        """Per-instance metrics that can be shown (registered ones included)."""
        return self.behaviours.instance_metrics if self.behaviours is not None else []

    @property
    def compared(self) -> list[str]:
        """Models that have outputs (the base first)."""
        return self.behaviours.models if self.behaviours is not None else []

    def subgroup_attributes(self) -> list[str]:
        if self.behaviours is None:
            return []
        return [c[len("meta_"):] for c in self.behaviours.subgroup_columns]

    def higher_is_better(self, metric: str) -> bool:
        if self.behaviours is None or metric not in self.behaviours.metrics:
            return True
        return self.behaviours.metrics[metric].higher_is_better

    # -- tables ------------------------------------------------------------------
    def table(self, mode: str, metric: str, relative: bool, drill: Drill | None = None) -> pd.DataFrame:
        """Rows for the grid, one value column ``v<i>`` per model (i = index in :attr:`models`).

        ``classes``: ``key`` (class index), ``name``, ``count``; ``subgroups``:
        ``key`` ("attribute=value"), ``name``, ``count``; ``instances``: ``key``
        (instance id), ``label``, ``name`` (class name) and ``p<i>`` predictions.
        ``relative``: each model's value minus the base's (the base column keeps its
        absolute value). Models without outputs have NaN columns. Cached per arguments.
        """
        key = (mode, metric, relative, drill.text() if drill else None)
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
        table = self._build_table(mode, metric, relative, drill)
        with self._lock:
            self._tables[key] = table
            while len(self._tables) > 16:
                self._tables.popitem(last=False)
        return table

    def _build_table(self, mode: str, metric: str, relative: bool, drill: Drill | None) -> pd.DataFrame:
        b = self.behaviours
        if b is None or metric not in b.metrics:
            return pd.DataFrame({"key": pd.Series(dtype=object), "name": pd.Series(dtype=object),
                                 "count": pd.Series(dtype=np.int64)})
        if mode == "classes":
            agg = b.by_class()
            frame = pd.DataFrame({"key": agg["label"].astype(str), "name": agg["label_name"].astype(str),
                                  "count": agg["count"].astype(np.int64)})
        elif mode == "subgroups":
            agg = b.by_subgroup()
            frame = pd.DataFrame({"key": (agg["attribute"].astype(str) + "=" + agg["value"].astype(str))
                                  if len(agg) else pd.Series(dtype=object),
                                  "name": (agg["attribute"].astype(str) + ": " + agg["value"].astype(str))
                                  if len(agg) else pd.Series(dtype=object),
                                  "count": agg["count"].astype(np.int64)})
        else:
            agg = b.instances
            rows = self._drill_mask(drill)
            if rows is not None:
                agg = agg.loc[rows]
            labels = agg["label"].to_numpy()
            frame = pd.DataFrame({"key": agg["instance_id"].astype(str).to_numpy(), "label": labels,
                                  "name": self._names(labels)})
            for i, run_id in enumerate(self.models):
                col = column("prediction", run_id)
                frame[f"p{i}"] = agg[col].to_numpy() if col in agg.columns else np.nan
        base_values = agg[column(metric, b.base)].to_numpy(np.float64)
        for i, run_id in enumerate(self.models):
            col = column(metric, run_id)
            if col not in agg.columns:
                frame[f"v{i}"] = np.nan
                continue
            values = agg[col].to_numpy(np.float64)
            frame[f"v{i}"] = values - base_values if relative and run_id != b.base else values
        return frame.reset_index(drop=True)

    def _drill_mask(self, drill: Drill | None) -> np.ndarray | None:
        b = self.behaviours
        if drill is None or b is None:
            return None
        if drill.kind == "class":
            return b.instances["label"].to_numpy() == int(drill.value)
        col = f"meta_{drill.attribute}"
        if col not in b.instances.columns:
            return np.zeros(len(b.instances), bool)
        return b.instances[col].astype(str).to_numpy() == drill.value

    def _names(self, labels: np.ndarray) -> np.ndarray:
        names = self.behaviours.class_names if self.behaviours is not None else []
        lookup = np.array([*names, ""], dtype=object)
        idx = np.where((labels >= 0) & (labels < len(names)), labels, len(names))
        out = lookup[idx]
        missing = out == ""
        out[missing] = labels[missing].astype(str)
        return out

    def page(self, mode: str, metric: str, relative: bool, *, drill: Drill | None = None,
             sort: Sequence[tuple[str, bool]] = (), filters: Sequence[tuple[str, str, Any]] = (),
             offset: int = 0, limit: int = 100) -> Page:
        """One page of :meth:`table`: sorted by ``sort`` ((column, ascending), first wins), filtered."""
        table = self.table(mode, metric, relative, drill)
        known = [(c, op, v) for c, op, v in filters if c in table.columns]
        sort_by, ascending = next(((c, a) for c, a in sort if c in table.columns), (None, True))
        if sort_by is None and mode == "instances":
            sort_by = None  # instances keep the dataset's order
        return page(table, sort_by=sort_by, ascending=ascending, filters=known, offset=offset, limit=limit)

    def preview_kind(self) -> str | None:
        """"image" or "text" (the kind of the first instance's preview), None without previews."""
        if self.behaviours is None or not len(self.behaviours.instances):
            return None
        first = self.previews([str(self.behaviours.instances["instance_id"].iloc[0])])
        return next(iter(first.values()))[0] if first else None

    def previews(self, instance_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(kind, value) previews of the given instances, by id (a page's worth)."""
        if self.preview_index is not None:
            return self.preview_index.lookup(instance_ids)
        if self.dataset is None:
            return {}
        return {i: (p.kind, p.value) for i, p in self.dataset.previews(instance_ids).items()}

    # -- header summaries -------------------------------------------------------
    def summaries(self, metric: str, relative: bool, bins: int = 16) -> list[dict[str, Any]]:
        """Per model (in :attr:`models` order): dataset-wide value and a histogram of per-instance values.

        ``value``: mean over instances (relative: minus the base's); ``counts``: the
        histogram over bins shared by all models (so sparklines compare); ``edges``:
        the bin edges; ``missing``: the reason a model has no outputs, else None.
        """
        b = self.behaviours
        out: list[dict[str, Any]] = []
        if b is None or metric not in b.metrics:
            return [{"value": math.nan, "counts": [], "edges": [], "missing": self.unavailable.get(r, self.problem)}
                    for r in self.models]
        table = b.instances
        base = table[column(metric, b.base)].to_numpy(np.float64)
        values: dict[str, np.ndarray] = {}
        for run_id in self.models:
            col = column(metric, run_id)
            if col in table.columns:
                v = table[col].to_numpy(np.float64)
                values[run_id] = v - base if relative and run_id != b.base else v
        finite = [v[np.isfinite(v)] for v in values.values()]
        finite = [v for v in finite if v.size]
        lo = min((float(v.min()) for v in finite), default=0.0)
        hi = max((float(v.max()) for v in finite), default=1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for run_id in self.models:
            if run_id not in values:
                out.append({"value": math.nan, "counts": [], "edges": [], "missing": self.unavailable.get(run_id)})
                continue
            v = values[run_id]
            v = v[np.isfinite(v)]
            counts = np.histogram(v, bins=edges)[0] if v.size else np.zeros(bins, np.int64)
            out.append({"value": float(v.mean()) if v.size else math.nan, "counts": counts.tolist(),
                        "edges": edges.tolist(), "missing": None})
        return out

    def prediction_changes(self, top: int = 5) -> dict[str, list[dict[str, Any]]]:
        """Per model: the ``top`` most frequent base→model prediction changes (names, count, fraction)."""
        if self.behaviours is None:
            return {}
        table = self.behaviours.prediction_changes(top=top)
        out: dict[str, list[dict[str, Any]]] = {r: [] for r in self.models if r != self.base}
        for row in table.itertuples(index=False):
            out.setdefault(str(row.model), []).append({
                "base": str(row.base_prediction_name), "model": str(row.model_prediction_name),
                "count": int(row.count), "fraction": float(row.fraction)})
        return out


def load_behaviour_set(client: MlflowClient, base: str, run_ids: Sequence[str],
                       datasets: Mapping[str, str] | None = None,
                       outputs_cache: Callable[[str], Outputs] | None = None) -> BehaviourSet:
    """Read the outputs of ``run_ids`` and compare them with ``base``'s.

    ``datasets``: dataset name -> dataset run id (the reader's), used when a run's
    outputs do not name their dataset run. ``outputs_cache(run_id)``: how to read one
    run's outputs (default :func:`load_outputs`); raises :class:`ArtifactError`.
    """
    load = outputs_cache or (lambda rid: load_outputs(client, rid))
    models = list(dict.fromkeys([base, *run_ids]))
    unavailable: dict[str, str] = {}
    outputs: dict[str, Outputs] = {}
    for run_id in models:
        try:
            outputs[run_id] = load(run_id)
        except ArtifactError as exc:
            unavailable[run_id] = exc.reason
    if base not in outputs:
        reason = unavailable.get(base, "not logged")
        return BehaviourSet(base, models, None, unavailable,
                            problem=f"the base model's outputs are {reason}: choose another base")
    base_out = outputs[base]
    dataset = None
    dataset_run = base_out.dataset_run_id or (datasets or {}).get(base_out.dataset or "")
    if dataset_run:
        try:
            dataset = load_dataset(client, dataset_run)
        except ArtifactError:
            dataset = None  # previews and subgroups are optional; the comparison still works
    behaviours = compare_behaviours(
        base_out, {r: o for r, o in outputs.items() if r != base}, base_key=base,
        dataset=dataset.instances if dataset is not None else None,
        class_names=dataset.class_names if dataset is not None else None)
    previews = PreviewIndex(client, dataset_run) if dataset is not None and dataset_run else None
    return BehaviourSet(base, models, behaviours, unavailable, dataset, preview_index=previews)


# =============================================================================
# Layers
# =============================================================================
@dataclass
class LayerSet:
    """A layer comparison of ``models`` (base first) as a module tree.

    ``problem``: why nothing could be compared (the base's tensors are missing).
    """

    kind: str
    base: str
    models: list[str]
    comparison: LayerComparison | None
    unavailable: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    _tree: pd.DataFrame | None = field(default=None, repr=False)
    _buckets: dict[tuple[str, str], np.ndarray] | None = field(default=None, repr=False)
    _node_cache: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    _change_cache: dict[tuple[str, str], float] | None = field(default=None, repr=False)
    _rows_cache: dict[tuple[str, str], dict[str, Any]] | None = field(default=None, repr=False)

    def tree(self) -> pd.DataFrame:
        """:meth:`LayerComparison.module_tree`, computed once."""
        if self._tree is None:
            self._tree = (self.comparison.module_tree() if self.comparison is not None
                          else pd.DataFrame(columns=["module", "parent", "depth", "model"]))
        return self._tree

    def bucket_totals(self) -> dict[tuple[str, str], np.ndarray]:
        """(module or tensor, model) -> element counts per change bucket, summed up the tree."""
        if self._buckets is None:
            totals: dict[tuple[str, str], np.ndarray] = {}
            if self.comparison is not None:
                modules = self.comparison.tensors.drop_duplicates("name").set_index("name")["module"]
                for name, hist in self.comparison.histograms.items():
                    chain = _ancestors(modules.get(name, ""))
                    if name not in chain:
                        chain.append(name)
                    for model, counts in hist.counts.items():
                        per_bucket = counts.sum(axis=1)
                        for node in chain:
                            key = (node, model)
                            totals[key] = totals[key] + per_bucket if key in totals else per_bucket.copy()
            self._buckets = totals
        return self._buckets

    def rows(self, *, expanded: Iterable[str] = (), pattern: str = "", flat: bool = False,
             sort_model: str | None = None) -> list[dict[str, Any]]:
        """The visible rows of the module tree, one cell dict per model.

        Tree mode: the root's children, and the children of every ``expanded`` node;
        siblings in module order, or by decreasing change of ``sort_model`` (a run id;
        "any" = the largest change over models). ``pattern``: a case-insensitive glob
        or substring of the name; matching nodes are shown with their ancestors. Flat
        mode (``flat``): every module holding tensors, sorted the same way.
        Each row: ``id``, ``name``, ``label``, ``depth``, ``has_children``,
        ``expanded``, ``kind`` ("module"|"tensor"), ``numel`` and ``cells`` (by model).
        """
        nodes = self._nodes()
        if not nodes:
            return []
        children: dict[str, list[str]] = {}
        for node_id, info in nodes.items():
            if info["parent"] is not None:
                children.setdefault(info["parent"], []).append(node_id)
        change = self._change_lookup()

        def score(node_id: str) -> float:
            if sort_model is None or sort_model == "":
                return 0.0
            if sort_model == "any":
                values = [change.get((node_id, m), math.nan) for m in self.models if m != self.base]
                values = [v for v in values if not math.isnan(v)]
                return max(values, default=-1.0)
            v = change.get((node_id, sort_model), math.nan)
            return -1.0 if math.isnan(v) else v

        def order(ids: list[str]) -> list[str]:
            ids = sorted(ids, key=lambda i: nodes[i]["index"])
            if sort_model:
                ids = sorted(ids, key=lambda i: -score(i))
            return ids

        match = _matcher(pattern)
        if flat:
            visible = [i for i, n in nodes.items() if n["leaf_module"] and match(i)]
            rows = [self._row(i, nodes, children, expanded=False, depth=0, label=i or "(model)")
                    for i in order(visible)]
            for row in rows:
                row["has_children"] = False  # a flat list does not expand
            return rows
        keep: set[str] | None = None
        open_set = set(expanded)
        if pattern:
            keep = set()
            for node_id in nodes:
                if node_id != "" and match(node_id):
                    keep.add(node_id)
                    keep.update(_ancestors(nodes[node_id]["module"]) if nodes[node_id]["kind"] == "tensor"
                                else _ancestors(node_id))
            open_set |= {n for n in keep if n in children}
        out: list[dict[str, Any]] = []
        stack = [("", -1)]
        while stack:
            node_id, depth = stack.pop()
            if node_id != "":
                out.append(self._row(node_id, nodes, children, expanded=node_id in open_set, depth=depth,
                                     label=nodes[node_id]["short"]))
            if node_id == "" or node_id in open_set:
                kids = [k for k in children.get(node_id, []) if keep is None or k in keep]
                stack.extend((k, depth + 1) for k in reversed(order(kids)))
        return out

    def all_parents(self) -> list[str]:
        """Every node with children (for "expand all")."""
        nodes = self._nodes()
        return sorted({n["parent"] for n in nodes.values() if n["parent"]})

    def _nodes(self) -> dict[str, dict[str, Any]]:
        """Tree nodes by id: modules (from the module tree) and, for weights, their tensors."""
        if self.comparison is None:
            return {}
        if self._node_cache is not None:
            return self._node_cache
        tree = self.tree()
        nodes: dict[str, dict[str, Any]] = {}
        tensors = self.comparison.tensors.drop_duplicates("name")
        holding = set(tensors["module"])
        # Modules in the order their tensors come (the model's own order), ancestors first.
        order = [a for m in tensors["module"] for a in _ancestors(str(m))]
        for i, module in enumerate(dict.fromkeys([*order, *tree["module"]])):
            nodes[module] = {"parent": None if module == "" else _parent(module), "kind": "module",
                             "module": module, "index": i, "short": _short(module),
                             "leaf_module": module in holding}
        largest = tensors.sort_values("numel", ascending=False, kind="stable").drop_duplicates("module")
        for row in largest.itertuples(index=False):
            if str(row.module) in nodes and str(row.name) != str(row.module):
                nodes[str(row.module)]["main_tensor"] = str(row.name)
        if self.kind == "weights":
            for j, row in enumerate(tensors.itertuples(index=False)):
                name = str(row.name)
                if name in nodes:
                    continue
                nodes[name] = {"parent": str(row.module), "kind": "tensor", "module": str(row.module),
                               "index": len(nodes) + j, "short": name[len(row.module) + 1:] if row.module else name,
                               "leaf_module": False}
        self._node_cache = nodes
        return nodes

    def _change_lookup(self) -> dict[tuple[str, str], float]:
        if self._change_cache is not None:
            return self._change_cache
        out: dict[tuple[str, str], float] = {}
        assert self.comparison is not None
        for row in self.tree()[["module", "model", "change"]].itertuples(index=False):
            out[(str(row.module), str(row.model))] = float(row.change)
        for row in self.comparison.tensors[["name", "model", "change"]].itertuples(index=False):
            out.setdefault((str(row.name), str(row.model)), float(row.change))
        self._change_cache = out
        return out

    def _row(self, node_id: str, nodes: dict[str, dict[str, Any]], children: dict[str, list[str]], *,
             expanded: bool, depth: int, label: str) -> dict[str, Any]:
        info = nodes[node_id]
        return {"id": node_id, "name": node_id, "label": label, "depth": depth,
                "has_children": bool(children.get(node_id)), "expanded": expanded, "kind": info["kind"],
                "cells": self.cells(node_id)}

    def cells(self, node_id: str) -> dict[str, dict[str, Any]]:
        """Per model: what a cell of ``node_id`` shows.

        ``change`` (normalized L2 vs base), ``sparsity`` (zero fraction), ``split``
        ([zero in both, model only, base only] fractions of compared elements),
        ``buckets`` (fractions per :data:`CHANGE_BUCKETS`), ``hist`` (bins x buckets
        counts of the node's own tensor, if it has one), ``edges`` ([lo, hi]),
        ``status`` (a note such as "shape differs", "missing", or the reason the
        model's tensors are unavailable).
        """
        assert self.comparison is not None
        nodes = self._nodes()
        info = nodes.get(node_id, {"kind": "module"})
        rows = self._row_lookup()
        buckets = self.bucket_totals()
        hist = self.comparison.histograms.get(node_id)
        hist_of = node_id
        if hist is None and info.get("main_tensor"):
            # A module holding tensors shows the distribution of its largest one (its weight).
            hist_of = info["main_tensor"]
            hist = self.comparison.histograms.get(hist_of)
        out: dict[str, dict[str, Any]] = {}
        for model in self.models:
            if model in self.unavailable:
                out[model] = {"status": self.unavailable[model], "unavailable": True}
                continue
            row = rows.get((node_id, model))
            if row is None:
                out[model] = {"status": "missing"}
                continue
            cell: dict[str, Any] = {"change": _num(row.get("change")), "sparsity": _num(row.get("sparsity")),
                                    "numel": int(row.get("numel") or 0)}
            split = [_num(row.get(c)) for c in ("zero_both_frac", "zero_model_only_frac", "zero_base_only_frac")]
            if not any(v is None for v in split):
                cell["split"] = split
            status = row.get("status")
            if info["kind"] == "tensor" or status is not None and hist is not None:
                if status in (STATUS_SHAPE, STATUS_MISSING, STATUS_NEW):
                    cell["status"] = str(status)
            else:
                n_shape = int(row.get("n_shape_differs") or 0)
                n_missing = int(row.get("n_missing") or 0)
                notes = []
                if n_shape:
                    notes.append(f"shape differs ({n_shape})")
                if n_missing and model != self.base:
                    notes.append(f"missing ({n_missing})")
                if notes:
                    cell["status"] = ", ".join(notes)
            totals = buckets.get((node_id, model))
            if totals is not None and totals.sum() > 0:
                cell["buckets"] = (totals / totals.sum()).round(4).tolist()
            if hist is not None and model in hist.counts:
                cell["hist"] = hist.counts[model].T.tolist()  # bins x buckets
                cell["edges"] = [float(hist.edges[0]), float(hist.edges[-1])]
                cell["hist_of"] = hist_of
            out[model] = cell
        return out

    def _row_lookup(self) -> dict[tuple[str, str], dict[str, Any]]:
        if self._rows_cache is not None:
            return self._rows_cache
        assert self.comparison is not None
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for rec in self.tree().to_dict("records"):
            out[(str(rec["module"]), str(rec["model"]))] = rec
        if self.kind == "weights":
            for rec in self.comparison.tensors.to_dict("records"):
                key = (str(rec["name"]), str(rec["model"]))
                if key not in out:
                    out[key] = rec
        else:  # activations: a module's own tensor carries its status
            for rec in self.comparison.tensors.to_dict("records"):
                key = (str(rec["name"]), str(rec["model"]))
                if key in out:
                    out[key] = {**out[key], "status": rec["status"]}
        self._rows_cache = out
        return out


def load_layer_set(client: MlflowClient, base: str, run_ids: Sequence[str], kind: str = "weights", *,
                   progress: Callable[[int, int], None] | None = None) -> LayerSet:
    """Stream the ``kind`` comparison of ``run_ids`` against ``base`` (see :func:`compare_layer_runs`)."""
    if kind not in LAYER_KINDS:
        raise ValueError(f"kind must be one of {LAYER_KINDS}, not {kind!r}")
    models = list(dict.fromkeys([base, *run_ids]))
    try:
        comparison = compare_layer_runs(client, base, models, kind=kind, progress=progress)
    except ArtifactError as exc:
        return LayerSet(kind, base, models, None, {base: exc.reason},
                        problem=f"the base model's {kind} are {exc.reason}: choose another base")
    return LayerSet(kind, base, models, comparison, dict(comparison.unavailable))


# =============================================================================
# Cache
# =============================================================================
class Comparisons:
    """Computed comparisons of one store, cached by (kind, base, run ids).

    Outputs are cached per run (a logged artifact does not change); behaviour and
    layer comparisons per key, least recently used dropped first. Layer comparisons
    of large models take seconds: :meth:`layers` runs at most one computation per key
    at a time and reports progress through :meth:`progress`.
    """

    def __init__(self, client: MlflowClient, datasets: Callable[[], Mapping[str, str]] | None = None,
                 size: int = 8) -> None:
        self.client = client
        self._datasets = datasets or dict
        self._size = size
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()
        self._outputs: OrderedDict[str, Outputs | ArtifactError] = OrderedDict()
        self._key_locks: dict[tuple[Hashable, ...], threading.Lock] = {}
        self._progress: dict[tuple[Hashable, ...], tuple[int, int]] = {}

    def behaviours(self, base: str, run_ids: Sequence[str]) -> BehaviourSet:
        """The behaviour comparison of ``run_ids`` against ``base`` (computed once per key)."""
        key = ("behaviours", base, tuple(dict.fromkeys(run_ids)))
        return self._get(key, lambda: load_behaviour_set(self.client, base, list(key[2]), self._datasets(),
                                                        outputs_cache=self._load_outputs))

    def layers(self, base: str, run_ids: Sequence[str], kind: str = "weights") -> LayerSet:
        """The ``kind`` layer comparison of ``run_ids`` against ``base`` (computed once per key)."""
        key = (kind, base, tuple(dict.fromkeys(run_ids)))

        def compute() -> LayerSet:
            def progress(done: int, total: int) -> None:
                self._progress[key] = (done, total)
            try:
                return load_layer_set(self.client, base, list(key[2]), kind, progress=progress)
            finally:
                self._progress.pop(key, None)
        return self._get(key, compute)

    def layers_in_background(self, base: str, run_ids: Sequence[str], kind: str = "weights") -> LayerSet | None:
        """The layer comparison if cached, else None after starting it in a thread (see :meth:`progress`)."""
        key = (kind, base, tuple(dict.fromkeys(run_ids)))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if key in self._progress or key in self._key_locks:
                return None  # already being computed
            self._progress[key] = (0, 0)
        thread = threading.Thread(target=self._background, args=(base, list(key[2]), kind), daemon=True,
                                  name=f"mlflow-cc-layers-{kind}")
        thread.start()
        return None

    def _background(self, base: str, run_ids: list[str], kind: str) -> None:
        key = (kind, base, tuple(run_ids))
        try:
            self.layers(base, run_ids, kind)
        except Exception as exc:  # noqa: BLE001 - reported to the app instead of dying silently
            with self._lock:
                self._cache[key] = LayerSet(kind, base, list(run_ids), None, {},
                                            problem=f"layer comparison failed: {exc}")
        finally:
            self._progress.pop(key, None)

    def progress(self, base: str, run_ids: Sequence[str], kind: str = "weights") -> tuple[int, int] | None:
        """(tensors done, total) of a layer comparison being computed, else None."""
        return self._progress.get((kind, base, tuple(dict.fromkeys(run_ids))))

    def is_cached(self, key_kind: str, base: str, run_ids: Sequence[str]) -> bool:
        with self._lock:
            return (key_kind, base, tuple(dict.fromkeys(run_ids))) in self._cache

    def _get(self, key: tuple[Hashable, ...], compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second request for the same key waits for the first
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            value = compute()
            with self._lock:
                self._cache[key] = value
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
                self._key_locks.pop(key, None)
        return value

    def _load_outputs(self, run_id: str) -> Outputs:
        with self._lock:
            hit = self._outputs.get(run_id)
        if hit is None:
            try:
                hit = load_outputs(self.client, run_id)
            except ArtifactError as exc:
                if exc.reason != "not logged":  # "not logged" may change: a run can still log it
                    with self._lock:
                        self._outputs[run_id] = exc
                raise
            with self._lock:
                self._outputs[run_id] = hit
                while len(self._outputs) > 64:
                    self._outputs.popitem(last=False)
        if isinstance(hit, ArtifactError):
            raise hit
        return hit


# =============================================================================
def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _ancestors(module: str) -> list[str]:
    parts = module.split(".") if module else []
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _parent(module: str) -> str:
    return module.rsplit(".", 1)[0] if "." in module else ""


def _short(module: str) -> str:
    return module.rsplit(".", 1)[-1] if module else "(model)"


def _matcher(pattern: str) -> Callable[[str], bool]:
    """Glob if the pattern has wildcards, else a case-insensitive substring."""
    pat = (pattern or "").strip().lower()
    if not pat:
        return lambda _name: True
    if any(c in pat for c in "*?["):
        return lambda name: fnmatch.fnmatchcase(name.lower(), pat)
    return lambda name: pat in name.lower()


__all__ = [
    "CHANGE_BUCKETS",
    "LAYER_KINDS",
    "ROW_MODES",
    "BehaviourSet",
    "Comparisons",
    "Drill",
    "LayerSet",
    "default_base",
    "load_behaviour_set",
    "load_layer_set",
    "ordered_models",
]
