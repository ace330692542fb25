"""The layout's rules hold: one role a folder, imports only go down, no file over ~400 lines,
a training job's `import mlflow_cc` pulls in no Dash, and the wheel ships no test-only code."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = {"mlflow_cc.contract", "mlflow_cc.errors"}
#: What each part of the library may import from the project (prefixes); the rest is forbidden.
ALLOWED = {
    "mlflow_cc.contract": set(),
    "mlflow_cc.errors": set(),
    "mlflow_cc.metric_info": {"mlflow_cc.contract", "mlflow_cc.errors"},
    "mlflow_cc.artifacts": BASE | {"mlflow_cc.artifacts"},
    "mlflow_cc.read": BASE | {"mlflow_cc.metric_info", "mlflow_cc.artifacts", "mlflow_cc.read"},
    "mlflow_cc.analysis": BASE | {"mlflow_cc.metric_info", "mlflow_cc.artifacts", "mlflow_cc.read",
                                  "mlflow_cc.analysis"},
    "mlflow_cc.track": BASE | {"mlflow_cc.metric_info", "mlflow_cc.artifacts", "mlflow_cc.read",
                               "mlflow_cc.track"},
    "mlflow_cc.torch": BASE | {"mlflow_cc.metric_info", "mlflow_cc.artifacts", "mlflow_cc.read",
                               "mlflow_cc.track", "mlflow_cc.torch", "mlflow_cc"},
    "mlflow_cc.autolog": BASE | {"mlflow_cc.metric_info", "mlflow_cc.artifacts", "mlflow_cc.read",
                                 "mlflow_cc.track", "mlflow_cc.torch", "mlflow_cc.autolog"},
    "mlflow_cc.studies": {"mlflow_cc"},
    # Composition roots: the public API, the CLI and the notebook helper (dash_app only lazily).
    "mlflow_cc": {"mlflow_cc"},
    "dash_app": {"mlflow_cc.contract", "mlflow_cc.errors", "mlflow_cc.metric_info", "mlflow_cc.artifacts",
                 "mlflow_cc.read", "mlflow_cc.analysis", "mlflow_cc.track.flags", "mlflow_cc.track.register",
                 "dash_app"},
}
COMPOSITION_ROOTS = {"mlflow_cc.cli", "mlflow_cc.notebook"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, imported at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks count as module level
        if isinstance(node, ast.If):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("mlflow_cc", "dash_app", "testing"):
                out.append((name, id(node) in top))
    return out


def rule_for(module: str) -> tuple[str, set[str]]:
    best = max((k for k in ALLOWED if module == k or module.startswith(k + ".")), key=len)
    return best, ALLOWED[best]


def shipped_files() -> list[Path]:
    return sorted(p for d in ("mlflow_cc", "dash_app") for p in (ROOT / d).rglob("*.py"))


def test_imports_only_go_down() -> None:
    bad = []
    for path in shipped_files():
        module = module_name(path)
        part, allowed = rule_for(module)
        for name, at_top in project_imports(path):
            if name.startswith("testing"):
                bad.append(f"{module} imports test-only {name}")
                continue
            if name.startswith("dash_app") and module.startswith("mlflow_cc"):
                if module not in COMPOSITION_ROOTS or at_top:
                    bad.append(f"{module} imports {name} (only the CLI and notebook may, lazily)")
                continue
            if name in ("mlflow_cc",) and part != "mlflow_cc" and part not in ("mlflow_cc.torch", "mlflow_cc.studies"):
                continue  # `from mlflow_cc import contract` names the module below
            if not any(name == a or name.startswith(a + ".") for a in allowed) and name != "mlflow_cc":
                bad.append(f"{module} ({part}) imports {name}")
    assert not bad, "\n".join(bad)


def test_analysis_never_imports_the_write_side_or_the_app() -> None:
    for path in (ROOT / "mlflow_cc" / "analysis").rglob("*.py"):
        for name, _ in project_imports(path):
            assert not name.startswith(("mlflow_cc.track", "mlflow_cc.torch", "dash_app")), (path, name)


def test_no_source_file_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in shipped_files()
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_importing_the_library_pulls_in_no_dash_or_plotly() -> None:
    code = ("import sys, mlflow_cc, mlflow_cc.read.reader, mlflow_cc.track.tracking, mlflow_cc.analysis.behaviours\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dash', 'plotly', 'dash_app', 'testing'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT / "tests")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(out), str(ROOT)], check=False, capture_output=True, text=True,
                         env={**__import__("os").environ, "TMPDIR": str(build)})
    assert run.returncode == 0, run.stderr
    (whl,) = out.glob("mlflow_cc-*.whl")
    return whl


def test_wheel_ships_no_test_only_code(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("mlflow_cc/read/reader.py") for n in names)
    assert any(n.startswith("dash_app/comparison/") for n in names)
    test_only = [n for n in names if n.startswith(("testing/", "tests/", "benchmarks/"))
                 or n.rsplit("/", 1)[-1] in ("local_server.py", "auth_server.py", "fault_proxy.py",
                                            "concurrent_writers.py", "synthetic.py")]
    assert not test_only, test_only
