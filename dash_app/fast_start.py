"""A faster first paint: the page asks for its layout while the browser still evaluates scripts.

Dash's renderer requests ``_dash-layout`` and ``_dash-dependencies`` only once every script
(React, the renderer, the component libraries, Plotly) has been evaluated: about a second of
main-thread work during which the server idles; then the server builds the first map (the
layout carries it, see :func:`dash_app.views.overview.layout`) while the browser waits.
:func:`install` starts both requests from a small inline script at the top of the page, so the
server's work overlaps the script evaluation, and hands the renderer those responses when it
asks (once; any other request, or a failed early request, goes to the network as before). The
lazily loaded chunks of the graph and dropdown components are preloaded the same way.
"""

from __future__ import annotations

import json
from typing import Any

#: dcc's lazily loaded chunks the overview needs for its first paint.
CHUNKS = ("async-graph.js", "async-dropdown.js")

EARLY = """<script>(function () {
  var base = %(base)s, early = {};
  function start(path) {
    early[base + path] = window.fetch(base + path, {method: "GET", credentials: "same-origin",
                                                    headers: {"Content-Type": "application/json"}});
    early[base + path].catch(function () { delete early[base + path]; });
  }
  start("_dash-layout"); start("_dash-dependencies");
  var real = window.fetch;
  window.fetch = function (input, init) {
    var url = typeof input === "string" ? input : (input && input.url) || "";
    var path = url.replace(/^https?:\\/\\/[^\\/]+/, "");
    var method = ((init && init.method) || "GET").toUpperCase();
    var hit = method === "GET" && early[path];
    if (hit) {
      delete early[path];
      return hit.catch(function () { return real(input, init); });
    }
    return real.apply(this, arguments);
  };
})();</script>"""


def early_head(base: str) -> str:
    """The ``<head>`` additions for an app served under ``base`` (its requests pathname prefix)."""
    links = "".join(f'<link rel="preload" as="script" href="{base}_dash-component-suites/dash/dcc/{c}">'
                    for c in CHUNKS)
    return EARLY % {"base": json.dumps(base)} + links


def install(app: Any) -> None:
    """Put the early requests at the top of ``app``'s page (keeps the rest of its index string)."""
    base = app.config.requests_pathname_prefix or "/"
    app.index_string = app.index_string.replace("{%metas%}", "{%metas%}" + early_head(base), 1)
