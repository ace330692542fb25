"""Every third-party import of a shipped module is declared in setup.cfg, where its part installs it.

Each shipped file belongs to a part of the package; a part may import what the core
(``install_requires``) and its own extras declare. Imports are read from the source (every
``import``, at top level or inside functions, ``try`` blocks included), so a module that is
only imported lazily must still be declared.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("mlflow_cc", "dash_app")
#: Path prefix -> the extras (besides the core) that part may rely on. First match wins.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("mlflow_cc/torch/", ("torch",)),
    ("mlflow_cc/studies/", ("torch", "studies")),
    # autolog patches torch / transformers only once the user's script has imported them
    ("mlflow_cc/autolog/", ("torch", "studies")),
    ("dash_app/gunicorn_conf.py", ("app", "team")),
    ("dash_app/", ("app",)),
    ("mlflow_cc/", ()),
]
#: Import names whose distribution is not found by name (none today; e.g. {"yaml": "pyyaml"}).
ALIASES: dict[str, str] = {}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(setup_cfg: Path = ROOT / "setup.cfg") -> dict[str, set[str]]:
    """extra ("" = core) -> normalized distribution names, from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)

    def names(block: str) -> set[str]:
        lines = [ln.split("#")[0].strip() for ln in block.splitlines()]
        return {_norm(re.match(r"[A-Za-z0-9_.-]+", ln).group(0)) for ln in lines if ln}

    out = {"": names(cfg["options"]["install_requires"])}
    out.update({extra: names(block) for extra, block in cfg["options.extras_require"].items()})
    return out


def third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in sys.stdlib_module_names and t not in SHIPPED and t != "__future__"}


def part_extras(rel: str) -> tuple[str, ...]:
    return next(extras for prefix, extras in PARTS if rel.startswith(prefix))


def undeclared(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """``file: module (distribution)`` for each import its part does not declare."""
    decl = declared(setup_cfg)
    dists = packages_distributions()
    problems = []
    for pkg in SHIPPED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            allowed = set(decl[""]).union(*(decl[e] for e in part_extras(rel)))
            for module in sorted(third_party_imports(path)):
                candidates = {_norm(d) for d in dists.get(module, [])} | {_norm(ALIASES.get(module, module))}
                if not candidates & allowed:
                    problems.append(f"{rel}: {module} ({', '.join(sorted(candidates))})")
    return problems


def test_every_import_is_declared_in_its_part() -> None:
    assert undeclared() == []


def test_the_check_sees_a_missing_declaration(tmp_path: Path) -> None:
    # The checker itself: with plotly dropped from the app extra, the figures are reported.
    text = (ROOT / "setup.cfg").read_text()
    assert "    plotly>=5.20\n" in text
    fake = tmp_path / "setup.cfg"
    fake.write_text(text.replace("    plotly>=5.20\n", ""))
    problems = undeclared(fake)
    assert any(p.startswith("dash_app/figures/") and ": plotly" in p for p in problems)


def test_core_needs_no_app_torch_or_studies_package() -> None:
    # The core's own declarations stay slim: a training job installs none of these.
    core = declared()[""]
    assert not core & {"dash", "dash-ag-grid", "plotly", "torch", "transformers", "scikit-learn", "gunicorn"}
