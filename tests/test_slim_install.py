"""``pip install mlflow-cc`` with no extras: a training job logs and reads a tree without Dash or Plotly.

The venv is a real one (``.venv-slim``, :mod:`testing.venvs`: ``pip install .`` from PyPI, built
once per setup.cfg; ``make test`` builds it before the suite).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from testing.venvs import ROOT, ensure

SCRIPT = r'''
import importlib.util, json, sys
import mlflow_cc as cc
from mlflow_cc.read.reader import ExperimentReader

uri = sys.argv[1]
with cc.log_base_model("cnn", experiment="slim", tracking_uri=uri) as base:
    base.log_metrics({"accuracy": 0.97, "size_bytes": 1000})
with cc.derive_model(base.run_id, "prune", {"sparsity": 0.5}, tracking_uri=uri) as child:
    child.log_metrics({"accuracy": 0.95})
forest = ExperimentReader("slim", uri).forest()
print(json.dumps({
    "models": sorted(n.name for n in forest.nodes.values()),
    "parent_ok": forest.nodes[child.run_id].parent_id == base.run_id,
    "installed_from": cc.__file__,
    "absent": [m for m in ("dash", "plotly", "dash_ag_grid", "torch") if importlib.util.find_spec(m) is None],
    "loaded": sorted(m for m in ("dash", "plotly", "torch") if m in sys.modules),
}))
'''


def test_core_install_logs_and_reads_without_dash_or_plotly(tmp_path: Path) -> None:
    python = ensure("slim")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH: the installed package only
    out = subprocess.run([str(python), "-c", SCRIPT, f"sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["models"] == ["cnn", "prune 50%"] and result["parent_ok"]
    assert not result["installed_from"].startswith(str(ROOT / "mlflow_cc"))  # the installed copy, not the tree
    assert result["absent"] == ["dash", "plotly", "dash_ag_grid", "torch"] and result["loaded"] == []


def test_app_commands_name_the_extra_to_install(tmp_path: Path) -> None:
    python = ensure("slim")
    out = subprocess.run([str(python.parent / "mlflow-cc"), "ui"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, check=False)
    assert out.returncode != 0
    assert "pip install \"mlflow-cc[app]\"" in out.stderr and "dash" in out.stderr
