"""A faster first paint: the page asks for its layout while the browser still evaluates scripts,
and the graphs' code is loaded before the layout is rendered (:data:`PREWARM`).

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

import html
import json
import re
from pathlib import Path
from typing import Any

#: Where Dash serves files that are the same for every visitor (what :class:`PageFiles` may keep).
STATIC = ("assets/", "_dash-component-suites/", "_favicon.ico")

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


#: Runs after the component libraries and before Dash's renderer starts (see :func:`install`).
#:
#: dcc's Graph and Dropdown are React lazy components. Rendered first inside the layout, each
#: suspended there until its code had loaded, and React then showed them at low priority behind
#: the renderer's handling of the first callbacks: the map was drawn 230-450 ms after the layout
#: was on the screen. Rendering one of each into a detached element (and unmounting it at once)
#: starts those loads while the server still builds the layout, so the layout's graphs mount
#: with the first render. Each graph's *first* ``Plotly.react`` then waits (later draws do not):
#: the first of them for the next frame, each other for a task of its own after it, so that the
#: React render and each graph's first drawing are separate main-thread tasks rather than one
#: long one, and the map (first in the layout) is drawn before the renderer's queued work.
PREWARM = """<script>(function () {
  var R = window.React, D = window.ReactDOM, dcc = window.dash_core_components;
  if (!R || !D || !dcc) { return; }
  try {
    var el = R.createElement("div", null,
                             R.createElement(dcc.Graph, {id: "cc-prewarm-graph"}),
                             R.createElement(dcc.Dropdown, {id: "cc-prewarm-dropdown", options: []}));
    var host = document.createElement("div");
    if (D.render) { D.render(el, host); D.unmountComponentAtNode(host); }
    else if (D.createRoot && D.flushSync) { var root = D.createRoot(host); D.flushSync(function () { root.render(el); }); root.unmount(); }
  } catch (e) { /* only a head start: the page renders as before */ }
  var P = window.Plotly;
  if (P && P.react && !P.react.ccDeferred) {
    var react = P.react, queue = [], waiting = false;
    function next() {  // one graph's first draw per task, in the order they were asked for
      waiting = false;
      var job = queue.shift();
      if (job) { job(); }
      if (queue.length) { waiting = true; setTimeout(next, 0); }
    }
    P.react = function (gd) {
      var self = this, args = arguments;
      if (!gd || gd._fullLayout) { return react.apply(self, args); }
      return new Promise(function (resolve, reject) {
        queue.push(function () {
          if (!gd.isConnected) { resolve(gd); return; }
          try { Promise.resolve(react.apply(self, args)).then(resolve, reject); } catch (e) { reject(e); }
        });
        if (waiting) { return; }
        waiting = true;
        var ran = false;
        function first() { if (!ran) { ran = true; next(); } }
        requestAnimationFrame(first);  // the first in the next frame, ahead of the renderer's queued tasks
        setTimeout(first, 250);  // a hidden page has no frames
      });
    };
    P.react.ccDeferred = true;
  }
})();</script>"""


#: Bytes per write when a file is sent by a server without its own ``wsgi.file_wrapper``.
FILE_CHUNK = 1 << 20


class WholeFiles:
    """WSGI middleware: static files in 1 MB writes where the server gives no file wrapper.

    Werkzeug's server (``mlflow-cc ui``, ``app.run``) has none, so Flask sent files 8 KB at a
    time, each write needing the GIL while the first layout was being computed in another
    thread: the 1.2 MB Plotly bundle arrived 200-550 ms after it was asked for on a new
    server (150 writes, each waiting its turn). Servers with their own wrapper (gunicorn's
    sendfile) keep it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    @staticmethod
    def wrapper(file: Any, _buffer_size: int = 8192) -> Any:
        from werkzeug.wsgi import FileWrapper

        return FileWrapper(file, FILE_CHUNK)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ.setdefault("wsgi.file_wrapper", self.wrapper)
        return self.app(environ, start_response)


class PageFiles:
    """WSGI middleware: the page's own scripts and stylesheets answered from memory.

    A first visit asks for 25 files at once (React, Dash's renderer and components, Plotly, the
    app's assets), six at a time over the browser's connections. Each went through Flask and
    Dash (routing, reading the file, headers): 2-27 ms of Python per file, one file at a time under
    the GIL and beside the first layout being built, so Plotly's bundle, 16th in line, began to
    arrive 100-160 ms after it was asked for. :func:`warm_up` fetches each file the page names
    through the app's own stack once (:meth:`keep`); later GETs of exactly those URLs get the
    same status, headers and bytes without entering Flask. Only answers the app gave with 200
    are kept: behind a sign-in, the warm-up's request is sent to the login page and nothing is
    kept. Conditional and range requests, and every other path, go to the app as before.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.kept: dict[str, tuple[str, list[tuple[str, str]], bytes]] = {}

    def keep(self, client: Any, urls: list[str]) -> None:
        """Run each of ``urls`` (paths under the app's routes, with their query) through the app."""
        for url in urls:
            resp = client.get(url)
            if resp.status_code == 200:
                headers = [(k, v) for k, v in resp.headers.items() if k.lower() != "date"]
                self.kept[url] = (resp.status, headers, resp.get_data())

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if (self.kept and environ.get("REQUEST_METHOD") == "GET"
                and not any(h in environ for h in ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_RANGE"))):
            query = environ.get("QUERY_STRING")
            hit = self.kept.get(environ.get("PATH_INFO", "") + ("?" + query if query else ""))
            if hit is not None:
                start_response(hit[0], list(hit[1]))
                return [hit[2]]
        return self.app(environ, start_response)


def install(app: Any) -> None:
    """Put the early requests at the top of ``app``'s page (keeps the rest of its index string)."""
    base = app.config.requests_pathname_prefix or "/"
    page = app.index_string.replace("{%metas%}", "{%metas%}" + early_head(base), 1)
    app.index_string = page.replace("{%renderer%}", PREWARM + "{%renderer%}", 1)
    app.server.wsgi_app = app.server.extensions["cc_page_files"] = PageFiles(WholeFiles(app.server.wsgi_app))


def warm_up(app: Any, *, page_files: bool = False) -> None:
    """Pay the server's one-time costs before the first visitor waits for them.

    Dash sets its server up on the first request (about 0.15 s here) and Plotly builds a
    property validator the first time each figure property is set (about 0.1 s for the map):
    both sat in front of the first page load. This runs one page request through ``app``'s
    own stack and draws the overview's figures for a three-model forest made up here; no
    experiment is read and nothing of the user's is computed or cached. Call it on the finished
    app (Flask refuses new routes once a request was handled).

    With ``page_files``, the scripts and stylesheets the page names are read into
    :class:`PageFiles` too. Only for an app whose every check on a request (the Host allow-list,
    a sign-in) is WSGI middleware around it, as :func:`dash_app.wsgi.build_app`'s Host
    allow-list is: a kept file is answered without entering Flask and its before-request hooks,
    and MLflow's own Host check inside ``mlflow server`` is such a hook.
    """
    import plotly.io as pio

    from dash_app.figures.encoding import default_metrics
    from dash_app.figures.overview import overview_figures
    from dash_app.state import empty_state
    from mlflow_cc.read.lineage import ModelNode, build_forest

    client = app.server.test_client()
    routes = app.config.routes_pathname_prefix or "/"
    page = client.get(routes).get_data(as_text=True)
    files = app.server.extensions.get("cc_page_files")
    if page_files and files is not None:
        base = app.config.requests_pathname_prefix or "/"  # the page's URLs are under this prefix
        named = re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', page)
        urls = [html.unescape(u)[len(base):] for u in named if u.startswith(base)]
        files.keep(client, [routes + u for u in urls if u.startswith(STATIC)])
    metrics = {"accuracy": 0.9, "size_bytes": 4.0e6, "latency_ms": 3.0}
    forest = build_forest([
        ModelNode("warm-0", "base", "0", metrics=metrics),
        ModelNode("warm-1", "pruned", "0", declared_parent_id="warm-0", operation="prune",
                  op_params={"sparsity": 0.5}, metrics={**metrics, "size_bytes": 2.0e6}),
        ModelNode("warm-2", "quantized", "0", declared_parent_id="warm-1", operation="quantize",
                  op_params={"bits": 8}, metrics={**metrics, "size_bytes": 1.0e6})])
    state = {**empty_state(), "ready": True, **default_metrics(forest, {})}
    for fig in overview_figures(forest, {}, state)[:2]:
        pio.to_json(fig, validate=False)


def drop_polyfill(app: Any) -> bool:
    """Leave Babel's 100 KB polyfill off the page when the regenerator runtime alone is installed.

    Dash puts ``@babel/polyfill`` (core-js 2) first on every page for old browsers. In the
    browsers of today it only costs: evaluating it was the page's first long task here, and its
    ``String.prototype.trim`` replaces the native one (core-js 2 judges Chrome's wrong) and runs
    in every Plotly draw. Of it, Dash's lazily loaded components need only the global
    ``regeneratorRuntime``, which ``assets/vendor/regenerator-runtime.js`` (fetched from the npm
    registry by ``make install``) defines. Without that file the polyfill stays. Returns whether
    it was dropped.
    """
    from dash import _dash_renderer

    if not (Path(app.config.assets_folder) / "vendor" / "regenerator-runtime.js").exists():
        return False
    for dep in _dash_renderer._js_dist_dependencies:
        for key in ("relative_package_path", "external_url"):
            paths = dep.get(key)
            if isinstance(paths, dict) and isinstance(paths.get("prod"), list):
                paths["prod"] = [p for p in paths["prod"] if "polyfill@" not in p]
    return True
