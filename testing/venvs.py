"""Extra virtual environments for CI, built once and kept while ``setup.cfg`` is unchanged.

* ``slim`` (``.venv-slim``): ``pip install .`` with no extras, as a training job installs it;
  ``tests/test_slim_install.py`` proves it imports ``mlflow_cc``, logs and reads a tree, and
  has neither Dash nor Plotly.
* ``mlflow-old`` (``.venv-mlflow-old``): the oldest MLflow the package supports (the lower
  bound of ``mlflow>=`` in setup.cfg) with the package installed editable, its ``app`` and
  ``team`` extras and pytest; ``make test`` runs the store and reader tests in it too.

Each venv holds a stamp ``.built-<hash>`` of setup.cfg and pyproject.toml; a stale or half-built
one is removed and rebuilt. ``python -m testing.venvs slim|mlflow-old`` builds one and prints
its python. Packages come from PyPI through ordinary pip; torch is never installed here.
"""

from __future__ import annotations

import configparser
import hashlib
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"slim": ".venv-slim", "mlflow-old": ".venv-mlflow-old"}


def setup_hash(root: Path = ROOT) -> str:
    """The first 12 hex digits of the md5 of setup.cfg + pyproject.toml (as the Makefile's stamp)."""
    data = b"".join((root / name).read_bytes() for name in ("setup.cfg", "pyproject.toml"))
    return hashlib.md5(data).hexdigest()[:12]


def oldest_mlflow(root: Path = ROOT) -> str:
    """The lower bound of ``mlflow>=X.Y`` in ``install_requires`` (e.g. ``"3.1"``)."""
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    for line in cfg["options"]["install_requires"].splitlines():
        match = re.match(r"\s*mlflow\s*>=\s*([0-9.]+)", line)
        if match:
            return match.group(1)
    raise LookupError("setup.cfg has no mlflow>= requirement")


def python_of(path: Path) -> Path:
    return path / "bin" / "python"


def ensure(kind: str, root: Path = ROOT) -> Path:
    """The python of venv ``kind`` (see :data:`NAMES`), built first if missing or stale."""
    path = root / NAMES[kind]
    stamp = path / f".built-{setup_hash(root)}"
    if stamp.is_file():
        return python_of(path)
    shutil.rmtree(path, ignore_errors=True)
    venv.create(path, with_pip=True, clear=True)
    py = str(python_of(path))
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    if kind == "slim":
        # A real install (a wheel built from the tree, no extras): what `pip install mlflow-cc` gives.
        subprocess.run([*pip, str(root)], check=True)
    else:
        old = oldest_mlflow(root)
        # SQLAlchemy 2.1 dropped a pool class that MLflow releases before mid-2025 import.
        subprocess.run([*pip, f"mlflow[auth]=={old}.*", "sqlalchemy<2.1", "-e", f"{root}[app,team]",
                        "pytest>=8", "requests", "psycopg2-binary"], check=True)
    stamp.touch()
    return python_of(path)


if __name__ == "__main__":
    print(ensure(sys.argv[1]))
