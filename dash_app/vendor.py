"""Build the page's Plotly bundle at install: only the trace types the app draws.

    python -m dash_app.vendor plotly    # what ``make install`` runs

Evaluating Plotly's script is the first page load's longest task. The published bundles carry
far more than the app draws: the cartesian one (1.5 MB) registers eleven trace types and the
world-calendars component with its date tables, and took 585 ms to evaluate in headless
Chromium here, against 181 ms for core + bar + heatmap (1.18 MB; medians of 7 fresh contexts,
same page, same machine). So this builds that bundle from plotly.js's own sources, fetched from
the npm registry at the version the installed ``plotly`` Python package was made for, with
esbuild (also from the registry). When npm, the registry or the build fails it falls back to
the published cartesian bundle, and without that to Dash's full bundle (nothing written).

The result is one file, ``dash_app/assets/vendor/plotly.min.js``; Dash serves every script in
``assets/`` and dcc.Graph then uses ``window.Plotly`` instead of loading its own. Its first line
says which bundle it is. ``TRACES`` must name every trace type the app's figures use
(``tests/test_vendor.py`` checks the figures' code against it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Trace types registered besides ``scatter`` (which plotly.js's core always carries).
TRACES = ("bar", "heatmap")
VENDOR = Path(__file__).resolve().parent / "assets" / "vendor"
BUNDLE = VENDOR / "plotly.min.js"
#: Bundles earlier installs put in assets/ (every one there is served: only one may stay).
OLD_BUNDLES = ("plotly-cartesian.min.js",)
ESBUILD = "esbuild@0.25.12"
NPM_TIMEOUT_S = 150  # each npm step (about 20 s here); an unreachable registry costs at most three times this

ENTRY = """var Plotly = require('plotly.js/lib/core');
Plotly.register([%s]);
module.exports = Plotly;
"""


def plotlyjs_version() -> str:
    import plotly.offline

    return plotly.offline.get_plotlyjs_version()


def _npm(args: list[str], cwd: Path) -> None:
    subprocess.run(["npm", *args], cwd=cwd, check=True, timeout=NPM_TIMEOUT_S,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def build_custom(version: str, work: Path) -> bytes:
    """core + ``TRACES`` of plotly.js ``version``, minified, as one script defining ``Plotly``."""
    (work / "package.json").write_text(json.dumps({"name": "cc-plotly", "private": True}))
    _npm(["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error",
          f"plotly.js@{version}", ESBUILD], work)
    (work / "entry.js").write_text(ENTRY % ", ".join(f"require('plotly.js/lib/{t}')" for t in TRACES))
    out = work / "out.js"
    subprocess.run([str(work / "node_modules" / ".bin" / "esbuild"), "entry.js", "--bundle", "--minify",
                    "--format=iife", "--global-name=Plotly", "--define:global=window",
                    "--define:define.amd=false", "--target=es2016", "--legal-comments=eof",
                    "--log-level=error", f"--outfile={out.name}"],
                   cwd=work, check=True, timeout=NPM_TIMEOUT_S, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    body = out.read_bytes()
    if b"Plotly" not in body or len(body) < 200_000:
        raise RuntimeError(f"esbuild wrote {len(body)} bytes: not a Plotly bundle")
    header = (f"/* plotly.js {version}: core (scatter) + {', '.join(TRACES)}, built by "
              f"dash_app/vendor.py from the npm registry; plotly.js is MIT-licensed */\n")
    return header.encode() + body


def fetch_cartesian(version: str, work: Path) -> bytes:
    """The published cartesian bundle of plotly.js ``version``."""
    _npm(["pack", "-q", f"plotly.js-cartesian-dist-min@{version}"], work)
    tgz = next(work.glob("*.tgz"))
    shutil.unpack_archive(str(tgz), str(work))
    body = (work / "package" / "plotly-cartesian.min.js").read_bytes()
    return f"/* plotly.js {version}: the published cartesian bundle (fallback) */\n".encode() + body


def install_plotly(dest: Path = BUNDLE) -> str:
    """Write the best bundle that can be had to ``dest``; returns what was done, for the log."""
    for old in OLD_BUNDLES:
        (dest.parent / old).unlink(missing_ok=True)
    if shutil.which("npm") is None:
        return "npm not found: the app uses Dash's full Plotly bundle"
    version = plotlyjs_version()
    errors = []
    for name, make in (("custom", build_custom), ("cartesian", fetch_cartesian)):
        with tempfile.TemporaryDirectory(prefix=f"cc-plotly-{name}-") as tmp:
            try:
                body = make(version, Path(tmp))
            except (OSError, subprocess.SubprocessError, RuntimeError, StopIteration) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                errors.append(f"{name}: {exc} {detail.decode(errors='replace')[-300:]}".strip())
                continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")
        partial.write_bytes(body)
        partial.replace(dest)
        return f"plotly.js {version} {name} bundle installed ({len(body) / 1e6:.2f} MB)" + (
            f"; the custom build failed: {errors[0]}" if errors else "")
    return "no Plotly bundle could be built or fetched: the app uses Dash's full bundle\n" + "\n".join(errors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["plotly"])
    ap.add_argument("--dest", type=Path, default=BUNDLE)
    args = ap.parse_args(argv)
    print(install_plotly(args.dest))
    return 0  # a missing bundle is a slower page, not a broken install


if __name__ == "__main__":
    sys.exit(main())
