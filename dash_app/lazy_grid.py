"""The grid library (dash-ag-grid, 1.3 MB of script) loads when a grid is first shown, not with every page.

Only the Performance Comparison draws grids, yet Dash puts every component library's script on
the page: the Compression Overview would download and evaluate it before its first paint (about a
tenth of a second of main-thread work and 3 MB of heap measured here). :func:`install` marks the
library's bundle *dynamic* (Dash still serves it, it is no longer on the page) and puts a stand-in
``dash_ag_grid`` namespace in its place (``assets/lazy_grid.js``): the stand-in ``AgGrid`` loads the
bundle on first mount and then renders the real grid with the same props; the real library
replaces the stand-in for every grid rendered after that.
"""

from __future__ import annotations

import html
import os
import sys
from typing import Any

from dash.fingerprint import build_fingerprint

#: The bundle of dash-ag-grid that registers the ``dash_ag_grid`` namespace.
BUNDLE = "dash_ag_grid.min.js"


def bundle_url(base: str) -> str:
    """The fingerprinted URL Dash serves the grid bundle at (long-cached, like the page's scripts)."""
    module = sys.modules["dash_ag_grid"]
    path = os.path.join(os.path.dirname(module.__file__ or ""), BUNDLE)
    fingerprint = build_fingerprint(BUNDLE, module.__version__, int(os.stat(path).st_mtime))
    return f"{base}_dash-component-suites/dash_ag_grid/{fingerprint}"


def install(app: Any) -> None:
    """Keep the grid bundle off ``app``'s page; the stand-in learns its URL from the page head."""
    import dash_ag_grid

    dash_ag_grid._js_dist = [dict(r, dynamic=True) if r.get("relative_package_path") == BUNDLE else r
                             for r in dash_ag_grid._js_dist]
    base = app.config.requests_pathname_prefix or "/"
    tag = f'<meta name="cc-grid-bundle" content="{html.escape(bundle_url(base))}">'
    app.index_string = app.index_string.replace("{%metas%}", "{%metas%}" + tag, 1)

