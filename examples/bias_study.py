"""Compression bias study: does pruning hurt rare classes more?

The study itself is in ``mlflow_cc/studies/bias_study.py``; this script runs it::

    python examples/bias_study.py [--tracking-uri URI] [--experiment NAME] [--progress]
"""

from __future__ import annotations

from mlflow_cc.studies.run import main

if __name__ == "__main__":
    main("bias_study")
