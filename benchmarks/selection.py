"""Selection Details time: explain 300 selected models of a 5,000-model forest (in memory).

The forest has the shape of ``testing.synthetic.build_random_forest`` (4 base models,
prune/quantize/finetune/calibrate with parameters, depth up to 6, parents drawn from the
last 200 models) but is built as ModelNodes, without a store. Three selections of 300:
random models (the hard case: many variables, Refine), whole subtrees, and one
recipe's leaves across parameters. Nothing is cached between calls, so there is no cold
and warm: every call is the full computation.

    python benchmarks/selection.py [N_MODELS 5000] [SELECTED 300]

One JSON line per case: ``case`` (its name), ``selected`` (models in it), ``ms`` (median of 5
calls of ``explain_selection``, milliseconds), ``variables`` (variables found),
``comparable`` (at most two variables remain: a details chart without Refine Comparison).
Then the last line:

- ``models``: models in the forest; ``selected``: the selection size asked for;
- ``selection_details_ms`` (ms): the worst case's median. Target <= 200.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's testing/ package

from mlflow_cc.analysis.selection import explain_selection
from mlflow_cc.read.lineage import Forest
from testing.synthetic import random_forest


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
