"""Reader speed vs the floor (bare ``MlflowClient.search_runs`` paging) on a sqlite store.

    python benchmarks/reader.py [--runs 2000] [--repeats 3]

Builds an experiment of N model runs (a random tree of depth up to 6), then, in this one
process, times (median of --repeats, interleaved): the floor, the reader's full build of
the forest, and the incremental refresh after 10 more runs were logged. The last line is
JSON: {"runs", "floor_s", "full_s", "full_ratio", "refresh_s", "refresh_ratio"}.
Targets: full_ratio <= 1.3, refresh_ratio <= 0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floor import floor_fetch
from mlflow.tracking import MlflowClient

from mlflow_cc.read.reader import ExperimentReader
from testing.synthetic import build_random_forest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'bench.db'}"
        client = MlflowClient(uri)
        exp_id = client.create_experiment("bench")
        t0 = time.perf_counter()
        ids = build_random_forest(client, exp_id, args.runs, max_depth=6)
        print(f"built {len(ids)} runs in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        floor_fetch(client, exp_id)  # warm the store's caches for both contenders alike

        floors, fulls = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            assert floor_fetch(client, exp_id) == args.runs
            floors.append(time.perf_counter() - t)
            t = time.perf_counter()
            reader = ExperimentReader("bench", client=client)
            forest = reader.forest()
            fulls.append(time.perf_counter() - t)
            assert len(forest) == args.runs
        build_random_forest(client, exp_id, 10, roots=1, seed=1)
        t = time.perf_counter()
        forest = reader.refresh()
        refresh_s = time.perf_counter() - t
        assert len(forest) == args.runs + 10, len(forest)
        floor_s, full_s = statistics.median(floors), statistics.median(fulls)
        print(json.dumps({"runs": args.runs, "floor_s": round(floor_s, 3), "full_s": round(full_s, 3),
                          "full_ratio": round(full_s / floor_s, 3), "refresh_s": round(refresh_s, 4),
                          "refresh_ratio": round(refresh_s / floor_s, 4)}))


if __name__ == "__main__":
    main()
