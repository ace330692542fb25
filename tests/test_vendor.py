"""The page's Plotly bundle (dash_app/vendor.py): it registers every trace type the app draws.

The browser side (the page loads exactly that bundle, its traces are registered, bar charts draw)
is in ``test_page_load_browser.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType

from dash_app import vendor

APP = Path(vendor.__file__).resolve().parent


def _trace_types_in_app_code() -> dict[str, list[str]]:
    """Every ``go.<Trace>`` the app's modules build, and ``{"type": ...}`` dicts inside ``data``."""
    found: dict[str, list[str]] = {}
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "go":
                cls = getattr(go, node.attr, None)
                if isinstance(cls, type) and issubclass(cls, BaseTraceType) and cls is not BaseTraceType:
                    found.setdefault(cls().type, []).append(f"{path.relative_to(APP)}:{node.lineno}")
    return found


def test_the_bundle_registers_every_trace_type_the_app_draws() -> None:
    used = _trace_types_in_app_code()
    assert {"scatter", "bar", "heatmap"} <= set(used), used  # the walk finds the figures' traces
    missing = {t: where for t, where in used.items() if t not in {"scatter", *vendor.TRACES}}
    assert not missing, f"add these trace types to dash_app.vendor.TRACES: {missing}"


def test_an_installed_bundle_says_what_it_is() -> None:
    if not vendor.BUNDLE.exists():  # make install found no npm: Dash's full bundle serves the page
        assert not [p for p in vendor.VENDOR.glob("*.js") if "plotly" in p.name]
        return
    head = vendor.BUNDLE.read_bytes()[:300].decode()
    assert head.startswith(f"/* plotly.js {vendor.plotlyjs_version()}: ")
    assert "core (scatter) + bar, heatmap" in head or "cartesian bundle" in head
    for old in vendor.OLD_BUNDLES:  # a bundle an earlier install left would load as well
        assert not (vendor.VENDOR / old).exists()


def test_without_npm_nothing_is_written_and_old_bundles_go(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "vendor" / "plotly.min.js"
    dest.parent.mkdir()
    (dest.parent / "plotly-cartesian.min.js").write_text("/* an earlier install's bundle */")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm on the PATH
    message = vendor.install_plotly(dest)
    assert "npm not found" in message and "full Plotly bundle" in message
    assert not dest.exists() and list(dest.parent.iterdir()) == []
