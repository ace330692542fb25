"""Repairing a broken language model: SmolLM2-135M-Instruct pruned with and without its norms.

The study itself is in ``mlflow_cc/studies/llm_repair.py``; this script runs it::

    python examples/llm_repair.py [--tracking-uri URI] [--experiment NAME] [--progress]
"""

from __future__ import annotations

from mlflow_cc.studies.run import main

if __name__ == "__main__":
    main("llm_repair")
