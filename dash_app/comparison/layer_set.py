"""A streamed layer comparison (:func:`~mlflow_cc.analysis.layer_compare.compare_layer_runs`) turned into the rows of a module tree: expanded modules, a name pattern, sorting by change.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from dash_app.comparison.base_choice import LAYER_KINDS
from mlflow_cc.analysis.layer_compare import (
    STATUS_MISSING,
    STATUS_NEW,
    STATUS_SHAPE,
    LayerComparison,
    compare_layer_runs,
)
from mlflow_cc.errors import ArtifactError


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
