"""Command line of one case study: ``python examples/<study>.py [--tracking-uri URI] [--experiment NAME]``."""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Sequence


def main(study: str, argv: Sequence[str] | None = None) -> None:
    """Build case study ``study`` (a module of :mod:`mlflow_cc.studies`) and print its results."""
    module = importlib.import_module(f"mlflow_cc.studies.{study}")
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--tracking-uri", default=None, help="Default: as MLflow (MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
    parser.add_argument("--experiment", default=module.EXPERIMENT, help=f"Default: {module.EXPERIMENT}.")
    parser.add_argument("--progress", action="store_true", help="Show evaluation progress bars.")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = module.build(args.tracking_uri, experiment=args.experiment, progress=args.progress)
    for model, metrics in results.items():
        print(f"{model:55s} {json.dumps(metrics)}")
    print(f"{len(results)} models logged to experiment {args.experiment!r} in {time.perf_counter() - start:.0f} s; "
          f"see them with: mlflow-cc tree -e {args.experiment}")
