"""Selection Details time: explain 300 selected models of a 5,000-model forest (in memory).

The forest has the shape of ``mlflow_cc.synthetic.build_random_forest`` (4 base models,
prune/quantize/finetune/calibrate with parameters, depth up to 6, parents drawn from the
last 200 models) but is built as ModelNodes, without a store. Three selections of 300:
random models (the hard case: many variables, Refine), whole subtrees, and one
recipe's leaves across parameters. Prints one JSON line per case, then a last line with
the worst median: {"models": 5000, "selected": 300, "selection_details_ms": ...}.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from mlflow_cc.lineage import Forest, ModelNode, build_forest
from mlflow_cc.selection_vars import explain_selection


def random_forest(n: int, *, max_depth: int = 6, roots: int = 4, seed: int = 0) -> Forest:
    """``n`` models in the shape build_random_forest writes to a store."""
    rng = random.Random(seed)
    ops: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("prune", lambda: {"method": rng.choice(["global_magnitude", "global_gradient"]),
                           "sparsity": rng.choice([0.3, 0.5, 0.7, 0.9])}),
        ("quantize", lambda: {"bits": rng.choice([8, 4])}),
        ("finetune", lambda: {"epochs": rng.choice([1, 2, 4])}),
        ("calibrate", lambda: {"batches": rng.choice([4, 8])})]
    nodes: list[ModelNode] = []
    depth: dict[str, int] = {}
    for i in range(n):
        rid = f"run{i:05d}"
        if i < roots:
            nodes.append(ModelNode(rid, f"model-{i}", "1", start_time=i))
            depth[rid] = 0
            continue
        candidates = [m.run_id for m in nodes[-200:] if depth[m.run_id] < max_depth]
        parent = rng.choice(candidates or [m.run_id for m in nodes[:roots]])
        op, params = rng.choice(ops)
        nodes.append(ModelNode(rid, f"model-{i}", "1", declared_parent_id=parent, operation=op,
                               op_params=params(), start_time=i))
        depth[rid] = depth[parent] + 1
    return build_forest(nodes)


def time_ms(forest: Forest, selected: list[str], repeats: int = 5) -> tuple[float, dict[str, Any]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        e = explain_selection(forest, selected)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), {"variables": len(e.variables), "comparable": e.comparable}


def main(n: int = 5000, k: int = 300) -> None:
    forest = random_forest(n)
    rng = random.Random(1)
    ids = list(forest.nodes)
    cases: dict[str, list[str]] = {"random": rng.sample(ids, k)}
    subtree: list[str] = []
    for rid in ids[4:]:  # whole subtrees, as "add descendants" selects them
        if len(subtree) >= k:
            break
        if rid not in subtree:
            subtree += [rid, *forest.descendants(rid)]
    cases["subtrees"] = subtree[:k]
    prunes = [m.run_id for m in forest if m.operation == "prune" and m.depth == 1]
    cases["prune leaves"] = (prunes + rng.sample(ids, k))[:k]
    worst = 0.0
    for name, sel in cases.items():
        ms, info = time_ms(forest, sel)
        worst = max(worst, ms)
        print(json.dumps({"case": name, "selected": len(sel), "ms": round(ms, 1), **info}))
    print(json.dumps({"models": len(forest), "selected": k, "selection_details_ms": round(worst, 1)}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
