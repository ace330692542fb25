"""Digits compression study: the paper's first study task in miniature.

The study itself is in ``mlflow_cc/studies/digits_study.py``; this script runs it::

    python examples/digits_study.py [--tracking-uri URI] [--experiment NAME] [--progress]
"""

from __future__ import annotations

from mlflow_cc.studies.run import main

if __name__ == "__main__":
    main("digits_study")
