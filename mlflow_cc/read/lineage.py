"""The provenance forest: typed model nodes and the tree they form (pure, no MLflow calls).

:func:`build_forest` never raises on bad lineage. A missing or deleted parent
makes an orphan root; a cycle is broken at its earliest-started run; every such
repair is reported in :attr:`Forest.warnings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from mlflow_cc.read.op_words import default_model_name

__all__ = ["Forest", "LineageWarning", "ModelNode", "build_forest", "default_model_name"]


#: MLflow statuses of a run still going, and of one that ended badly.
RUNNING_STATUSES = ("RUNNING", "SCHEDULED")
FAILED_STATUSES = ("FAILED", "KILLED")


@dataclass
class ModelNode:
    """One model (one MLflow run)."""

    run_id: str
    name: str
    experiment_id: str
    #: The parent named by the run's ``mlflow.parentRunId`` tag (may be missing or bad).
    declared_parent_id: str | None = None
    operation: str | None = None
    op_params: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    #: Extra lineage inputs: [{"run_id": ..., "role": "teacher"}].
    inputs: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: MLflow status: RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    status: str = "FINISHED"
    start_time: int = 0  # ms since epoch
    end_time: int | None = None
    failure_reason: str | None = None
    #: A run from another experiment, pulled in because a model here derives from it.
    external: bool = False
    # Filled by build_forest:
    parent_id: str | None = None
    children: list[str] = field(default_factory=list)
    depth: int = 0

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATUSES

    @property
    def is_failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def label(self) -> str:
        """Operation with its parameters, e.g. ``prune(method=magnitude, sparsity=0.5)``."""
        if not self.operation:
            return "base"
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.op_params.items()))
        return f"{self.operation}({args})" if args else self.operation

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "name": self.name, "experiment_id": self.experiment_id,
            "parent": self.parent_id, "declared_parent": self.declared_parent_id,
            "children": list(self.children), "operation": self.operation, "params": self.op_params,
            "step": self.step, "depth": self.depth, "inputs": self.inputs, "metrics": self.metrics,
            "status": self.status, "failure_reason": self.failure_reason, "external": self.external,
            "start_time": self.start_time,
        }


@dataclass(frozen=True)
class LineageWarning:
    """Something wrong with the lineage, repaired for display and reported to the user."""

    kind: str  # "orphan", "deleted_parent", "cycle", "external", "failed", "bad_tag", "metadata"
    run_id: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "run_id": self.run_id, "message": self.message}


@dataclass
class Forest:
    """Models by run id, the roots in display order, and the warnings met building them."""

    nodes: dict[str, ModelNode]
    roots: list[str]
    warnings: list[LineageWarning]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[ModelNode]:
        return iter(self.nodes.values())

    def __getitem__(self, run_id: str) -> ModelNode:
        return self.nodes[run_id]

    def walk(self) -> Iterator[ModelNode]:
        """Depth-first, roots in order, children in order."""
        stack = list(reversed(self.roots))
        while stack:
            node = self.nodes[stack.pop()]
            yield node
            stack.extend(reversed(node.children))

    def ancestors(self, run_id: str) -> list[str]:
        """Parent, grandparent, ... up to the root (nearest first)."""
        out: list[str] = []
        parent = self.nodes[run_id].parent_id
        while parent is not None:
            out.append(parent)
            parent = self.nodes[parent].parent_id
        return out

    def descendants(self, run_id: str) -> list[str]:
        out: list[str] = []
        stack = list(self.nodes[run_id].children)
        while stack:
            rid = stack.pop()
            out.append(rid)
            stack.extend(self.nodes[rid].children)
        return out

    def root_of(self, run_id: str) -> str:
        anc = self.ancestors(run_id)
        return anc[-1] if anc else run_id

    def metric_names(self) -> list[str]:
        names: set[str] = set()
        for n in self.nodes.values():
            names.update(n.metrics)
        return sorted(names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "roots": list(self.roots),
            "nodes": [n.to_dict() for n in self.walk()],
            "warnings": [w.to_dict() for w in self.warnings],
        }


def build_forest(nodes: Iterable[ModelNode], missing_parents: dict[str, str] | None = None, *,
                 copy: bool = True) -> Forest:
    """Link ``nodes`` into a forest.

    ``missing_parents`` maps a declared parent id that is not among ``nodes`` to why
    ("deleted" or "not found"); unknown ids default to "not found". ``copy=False`` links the
    given nodes themselves (for nodes no forest holds yet: a reopen links 50,000 of them).
    """
    by_id: dict[str, ModelNode] = {}
    for n in nodes:
        # A copy: the reader rebuilds its forest from the same nodes on every refresh, while other
        # threads may still walk the previous forest (resetting shared children lists broke them).
        if copy:
            n = copy_node(n)
        n.parent_id, n.children, n.depth = None, [], 0
        by_id[n.run_id] = n
    missing_parents = missing_parents or {}
    warnings: list[LineageWarning] = []

    for n in by_id.values():
        pid = n.declared_parent_id
        if not pid:
            continue
        if pid == n.run_id:
            warnings.append(LineageWarning("cycle", n.run_id, f"{n.name} names itself as its parent; "
                                           "shown as a root"))
        elif pid in by_id:
            n.parent_id = pid
        else:
            why = missing_parents.get(pid, "not found")
            kind = "deleted_parent" if why == "deleted" else "orphan"
            warnings.append(LineageWarning(kind, n.run_id, f"{n.name}: parent run {pid} is {why}; "
                                           "shown as a root"))

    ordered = sorted(by_id.values(), key=order_key)
    roots, reached = _link(by_id, ordered)
    if reached < len(by_id):  # parent chains that loop (no root reaches them): cut them, link again
        warnings.extend(_break_cycles(by_id))
        for n in ordered:
            n.children = []
        roots, _ = _link(by_id, ordered)
    warnings.extend(failed_warning(n) for n in ordered if n.status in FAILED_STATUSES)
    return Forest(by_id, roots, warnings)


def _link(by_id: dict[str, ModelNode], ordered: list[ModelNode]) -> tuple[list[str], int]:
    """Fill children (in start order) and depths from the parent links; the roots, and how many
    nodes they reach (fewer than all: some parent chains loop)."""
    roots: list[str] = []
    for n in ordered:
        if n.parent_id is not None:
            by_id[n.parent_id].children.append(n.run_id)
        else:
            roots.append(n.run_id)
    reached, depth, level = 0, 0, roots
    while level:  # level by level (trees can be deep)
        below: list[str] = []
        for rid in level:
            node = by_id[rid]
            node.depth = depth
            below += node.children
        reached += len(level)
        level, depth = below, depth + 1
    return roots, reached


def failed_warning(node: ModelNode) -> LineageWarning:
    """The warning for a failed or killed run."""
    reason = f": {node.failure_reason}" if node.failure_reason else ""
    return LineageWarning("failed", node.run_id, f"{node.name} {node.status.lower()}{reason}")


def copy_node(node: ModelNode) -> ModelNode:
    """``copy.copy`` of a node, without its generic machinery (a reopen copies tens of thousands)."""
    twin = object.__new__(ModelNode)
    twin.__dict__.update(node.__dict__)
    return twin


#: Siblings and roots in start order (the run id breaks ties); attrgetter runs in C.
order_key = attrgetter("start_time", "run_id")


def _break_cycles(by_id: dict[str, ModelNode]) -> list[LineageWarning]:
    """Find parent-pointer cycles (iterative colouring, O(n)) and cut each at its earliest run."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    warnings: list[LineageWarning] = []
    for start in by_id:
        if state.get(start):
            continue
        path: list[str] = []
        rid: str | None = start
        while rid is not None and not state.get(rid):
            state[rid] = 1
            path.append(rid)
            rid = by_id[rid].parent_id
        if rid is not None and state.get(rid) == 1:
            cycle = path[path.index(rid):]
            cut = min((by_id[c] for c in cycle), key=order_key)
            cut.parent_id = None
            names = " -> ".join(by_id[c].name for c in cycle)
            warnings.append(LineageWarning("cycle", cut.run_id, f"lineage cycle ({names}) broken: "
                                           f"{cut.name} shown as a root"))
        for p in path:
            state[p] = 2
    return warnings
