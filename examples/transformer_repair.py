"""Repairing a broken transformer: pruning normalization layers breaks all-MiniLM-L6-v2.

The study itself is in ``mlflow_cc/studies/transformer_repair.py``; this script runs it::

    python examples/transformer_repair.py [--tracking-uri URI] [--experiment NAME] [--progress]
"""

from __future__ import annotations

from mlflow_cc.studies.run import main

if __name__ == "__main__":
    main("transformer_repair")
