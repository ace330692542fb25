"""Many processes logging derived models into one experiment at once (tests, benchmarks).

Each writer process derives ``count`` models from a shared base run (and from its own
earlier models), each with metrics, per-instance outputs and layers, through the
public logging API. Everything a writer logs is a deterministic function of
``(writer, index)`` (:func:`expected_arrays`), so a checker can recompute it.

    python -m testing.concurrent_writers --tracking-uri URI --base RUN_ID --writer 3 --count 25

prints one JSON line: the records of the models it logged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd

#: Instances and classes of the synthetic evaluation set, and the layer tensors' shapes.
INSTANCES, CLASSES = 40, 5
TENSORS = {"conv.weight": (8, 4), "fc.weight": (CLASSES, 8), "fc.bias": (CLASSES,)}
OPERATIONS = ("prune", "quantize", "finetune")


def expected_arrays(writer: int, index: int) -> dict[str, np.ndarray]:
    """The logits, labels and weights writer ``writer`` logs for its ``index``-th model."""
    rng = np.random.default_rng([writer, index])
    out = {"logits": rng.normal(size=(INSTANCES, CLASSES)).astype(np.float32),
           "labels": rng.integers(0, CLASSES, INSTANCES)}
    for name, shape in TENSORS.items():
        out[name] = rng.normal(size=shape).astype(np.float32)
    return out


def write_models(tracking_uri: str, base_run_id: str, writer: int, count: int) -> list[dict[str, Any]]:
    """Log ``count`` derived models; returns what each should look like in the store."""
    from mlflow_cc.artifacts import log_layers, log_outputs, summarize_tensor
    from mlflow_cc.track.tracking import derive_model

    rng = np.random.default_rng([writer, 10_000])
    parents = [base_run_id]
    records: list[dict[str, Any]] = []
    ids = [f"i{k}" for k in range(INSTANCES)]
    for index in range(count):
        parent = parents[int(rng.integers(len(parents)))]
        op = OPERATIONS[index % len(OPERATIONS)]
        params = {"writer": writer, "index": index, "amount": round(float(rng.uniform()), 6)}
        arrays = expected_arrays(writer, index)
        metrics = {"accuracy": float(np.mean(arrays["logits"].argmax(1) == arrays["labels"])),
                   "size_bytes": float(1000 + index)}
        with derive_model(parent, op, params, name=f"w{writer}-m{index}", tracking_uri=tracking_uri) as m:
            m.log_metrics(metrics)
            log_outputs(m.run_id, ids, arrays["logits"], arrays["labels"], client=m.client)
            summary = pd.DataFrame([summarize_tensor(n.rsplit(".", 1)[0], n.rsplit(".", 1)[1], "Linear",
                                                     arrays[n]) for n in TENSORS])
            log_layers(m.run_id, summary, {n: arrays[n] for n in TENSORS}, client=m.client)
        records.append({"run_id": m.run_id, "parent": parent, "operation": op, "params": params,
                        "metrics": metrics, "writer": writer, "index": index, "name": m.name})
        parents.append(m.run_id)
    return records


def run_writers(tracking_uri: str, base_run_id: str, writers: int, count: int, *,
                env: dict[str, str] | None = None, timeout: float = 600.0) -> list[dict[str, Any]]:
    """Start ``writers`` processes at once and gather their records (raises if one fails)."""
    procs = [subprocess.Popen([sys.executable, "-m", "testing.concurrent_writers", "--tracking-uri",
                               tracking_uri, "--base", base_run_id, "--writer", str(w), "--count", str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **(env or {})})
             for w in range(writers)]
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for w, proc in enumerate(procs):
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            errors.append(f"writer {w} exited {proc.returncode}: {err[-2000:]}")
            continue
        records.extend(json.loads(out.strip().splitlines()[-1]))
    if errors:
        raise RuntimeError("\n".join(errors))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--writer", type=int, required=True)
    parser.add_argument("--count", type=int, default=25)
    args = parser.parse_args()
    records = write_models(args.tracking_uri, args.base, args.writer, args.count)
    print(json.dumps(records))


if __name__ == "__main__":
    main()
