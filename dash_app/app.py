"""The Dash app factory: ``create_app(reader)`` or ``create_app(reader_factory=..., experiment=...)``.

Top-level views are listed in :data:`VIEWS`; each module has ``TITLE``,
``layout(source)`` and ``register(app, source)``. A second view (Performance
Comparison) is added by appending its module there; tabs appear once there are two.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from dash import Dash, dcc, html

from dash_app import fast_start, lazy_grid
from dash_app.source import DataSource, ReaderFactory
from dash_app.views import comparison, overview
from mlflow_cc.read.reader import ExperimentReader

VIEWS: list[ModuleType] = [overview, comparison]


def create_app(reader: ExperimentReader | None = None, *, reader_factory: ReaderFactory | None = None,
               experiment: str | None = None, tracking_uri: str | None = None,
               mlflow_ui_url: str | None = None, refresh_ms: int = 3000, source: DataSource | None = None,
               chrome: Sequence[ModuleType] = (), **dash_kwargs: Any) -> Dash:
    """Build the app on a reader (tests hand it one on a real store) or a reader factory.

    ``mlflow_ui_url`` is the base of run links (default: the tracking server's URL, or
    ``http://127.0.0.1:5000`` for a local store); ``refresh_ms`` how often the app asks
    the reader for new runs. ``source``: a ready data source instead (team deployments: per
    user, see :mod:`dash_app.team_source`); ``chrome``: modules with ``layout(source)`` and
    ``register(app, source)`` drawn in the header (the store status strip, see :mod:`dash_app.wsgi`).
    """
    if reader_factory is None:
        uri = reader.tracking_uri if reader is not None else tracking_uri
        reader_factory = lambda exp: ExperimentReader(exp, uri)
    if reader is None and experiment is not None:
        reader = reader_factory(experiment)
    source = source if source is not None else DataSource(reader_factory, reader, mlflow_ui_url)
    app = Dash(__name__, title="Compress and Compare", update_title=None,
               suppress_callback_exceptions=True, **dash_kwargs)
    app.server.config["CC_SOURCE"] = source

    def serve_layout() -> html.Div:
        bodies = [v.layout(source) for v in VIEWS]
        if len(VIEWS) == 1:
            main = bodies[0]
        else:
            # value given: a Tabs without one sets it when mounted, a change that would run every
            # callback reading the tab on page load
            main = dcc.Tabs(id="app-tabs", value=VIEWS[0].__name__,
                            children=[dcc.Tab(label=v.TITLE, value=v.__name__, children=b)
                                      for v, b in zip(VIEWS, bodies)])
        return html.Div(className="cc-app", children=[
            html.Header(className="cc-header", children=[
                html.Span("Compress and Compare", className="cc-title"),
                html.Span(" for MLflow", className="cc-subtitle"), *(c.layout(source) for c in chrome)]),
            main])

    app.layout = serve_layout
    fast_start.install(app)  # the layout is asked for while scripts load
    lazy_grid.install(app)  # the grid library loads with the first grid shown
    fast_start.drop_polyfill(app)
    for v in [*VIEWS, *chrome]:
        v.register(app, source, refresh_ms=refresh_ms)
    return app
