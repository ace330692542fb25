"""The page the app serves first: what is on it, what is set up before the first visitor (issue 13).

Real app on a real sqlite store, through Flask's test client; the browser side is in
``test_page_load_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dash import Patch, no_update

from dash_app import fast_start
from dash_app.serving import Settings
from dash_app.state_patch import patch_changes
from dash_app.wsgi import build_app
from mlflow_cc.track.tracking import log_base_model


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Any:
    uri = f"sqlite:///{tmp_path_factory.mktemp('fast-start') / 'mlflow.db'}"
    with log_base_model("base", experiment="fast-start", tracking_uri=uri) as base:
        base.log_metrics({"accuracy": 0.9})
    app = build_app(Settings(tracking_uri=uri, auth="none", allow_remote=False, experiment=base.experiment_id,
                             mlflow_ui_url=None, refresh_ms=3000))
    return app, app.server.test_client()


def test_server_is_set_up_before_the_first_visitor(web: Any) -> None:
    app, _ = web
    # Dash's one-time set-up ran in build_app (it used to run inside the first page request)
    assert app._got_first_request["setup_server"] is True


def test_the_page_leaves_off_the_grid_library_and_says_where_it_is(web: Any) -> None:
    app, client = web
    page = client.get("/").get_data(as_text=True)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert scripts and not [s for s in scripts if "dash_ag_grid" in s]
    assert [s for s in scripts if "lazy_grid.js" in s]  # the stand-in that loads it with the first grid
    bundle = re.search(r'<meta name="cc-grid-bundle" content="([^"]+)"', page)
    assert bundle is not None
    served = client.get(bundle.group(1))
    assert served.status_code == 200 and b"dash_ag_grid" in served.data  # Dash still serves it
    if Path(app.config.assets_folder, "vendor", "regenerator-runtime.js").exists():  # make install put it there
        assert not [s for s in scripts if "polyfill@" in s]
        assert [s for s in scripts if "regenerator-runtime.js" in s]
    else:
        assert [s for s in scripts if "polyfill@" in s]


def test_graph_and_dropdown_code_is_asked_for_before_the_renderer_starts(web: Any) -> None:
    _, client = web
    page = client.get("/").get_data(as_text=True)
    prewarm = page.index("cc-prewarm-graph")
    scripts = [m.start() for m in re.finditer(r'<script[^>]*src="[^"]*dash_core_components\.', page)]
    renderer = page.index("new DashRenderer")
    assert scripts and max(scripts) < prewarm < renderer  # after dcc's bundle, before Dash renders the layout


def test_a_patch_that_changes_nothing_is_no_update() -> None:
    state = {"ready": True, "sel": ["a"], "rows": "subgroups"}
    assert patch_changes(state, dict(state)) is no_update
    # a missing key and None are the same; so is a control's default and nothing
    assert patch_changes(state, dict(state, sig=None, alpha=None)) is no_update
    assert patch_changes(state, dict(state, metric="correct", rel="abs", lview="tree", open=[])) is no_update
    assert patch_changes({**state, "rows": "classes"}, {**state, "rows": "classes"}) is no_update


def test_a_patch_sets_only_what_changed() -> None:
    state = {"ready": True, "sel": ["a"], "rows": "subgroups", "bsort": "x"}
    patch = patch_changes(state, {"ready": True, "sel": ["a", "b"], "rows": "classes"})
    assert isinstance(patch, Patch)
    ops = patch.to_plotly_json()["operations"]
    assert {(o["operation"], o["location"][0]) for o in ops} == {("Assign", "sel"), ("Assign", "rows"),
                                                                  ("Delete", "bsort")}
    assert [o["params"]["value"] for o in ops if o["location"] == ["rows"]] == [None]  # the default: nothing


def test_static_files_go_out_in_large_writes(web: Any) -> None:
    app, client = web
    css = min(Path(app.config.assets_folder).glob("*.css"))
    big = Path(app.config.assets_folder, "vendor", "plotly.min.js")
    path = big if big.exists() else css  # the Plotly bundle when make install built it
    resp = client.get(f"/assets/{path.relative_to(app.config.assets_folder).as_posix()}", buffered=False)
    chunks = list(resp.response)
    assert b"".join(chunks) == path.read_bytes()
    # one write per MB (Werkzeug's own wrapper wrote 8 KB at a time: 150 writes for Plotly's bundle)
    assert len(chunks) <= path.stat().st_size // fast_start.FILE_CHUNK + 1
    resp.close()


def _page_urls(client: Any) -> list[str]:
    page = client.get("/").get_data(as_text=True)
    return re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="(/[^"]+)"', page)


def test_the_pages_files_are_answered_from_memory_as_the_app_answers_them(web: Any) -> None:
    app, client = web
    files = app.server.extensions["cc_page_files"]
    urls = _page_urls(client)
    assert len(urls) >= 15 and set(urls) <= set(files.kept)  # every script and stylesheet the page names
    entered: list[str] = []
    inner = files.app

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        entered.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    files.app = counted
    try:
        kept = {u: client.get(u) for u in urls}
        assert entered == []  # none of them went through Flask
    finally:
        files.app = inner
    from werkzeug.test import Client

    direct = Client(inner)  # the same URLs answered by the app itself
    for url, resp in kept.items():
        fresh = direct.get(url)
        assert (resp.status_code, resp.get_data()) == (fresh.status_code, fresh.get_data()), url
        assert resp.headers["Content-Type"] == fresh.headers["Content-Type"]
        assert resp.headers.get("Cache-Control") == fresh.headers.get("Cache-Control")


def test_conditional_requests_and_other_paths_still_reach_the_app(web: Any) -> None:
    app, client = web
    files = app.server.extensions["cc_page_files"]
    url = next(u for u in _page_urls(client) if "dash_renderer" in u)
    entered: list[str] = []
    inner = files.app
    files.app = lambda environ, start_response: entered.append(environ["PATH_INFO"]) or inner(environ, start_response)
    try:
        client.get(url, headers={"If-None-Match": '"x"'})
        client.get(url.split("?")[0] + "?v=other")  # another query: another URL
        client.get("/_dash-layout")
    finally:
        files.app = inner
    assert len(entered) == 3


def test_behind_a_sign_in_the_warm_up_keeps_nothing() -> None:
    import flask

    from dash_app.app import create_app

    app = create_app(reader_factory=lambda experiment: None)
    # the page itself answers (its URLs are read), each file it names is sent to a login page
    app.server.before_request_funcs.setdefault(None, []).insert(
        0, lambda: flask.redirect("/login") if flask.request.path != "/" else None)
    fast_start.warm_up(app, page_files=True)
    assert app.server.extensions["cc_page_files"].kept == {}


def test_a_kept_file_still_answers_only_the_apps_own_host_names(web: Any) -> None:
    _, client = web
    url = next(u for u in _page_urls(client) if "plotly" in u or "dash_renderer" in u)
    assert client.get(url).status_code == 200
    refused = client.get(url, headers={"Host": "rebound.example"})
    assert refused.status_code >= 400 and b"function" not in refused.get_data()


def test_without_page_files_the_warm_up_keeps_nothing() -> None:
    from dash_app.app import create_app

    app = create_app(reader_factory=lambda experiment: None)  # as inside `mlflow server`: Host checks are hooks
    fast_start.warm_up(app)
    assert app.server.extensions["cc_page_files"].kept == {}


def test_only_files_the_same_for_every_visitor_are_kept() -> None:
    from dash_app.app import create_app

    app = create_app(reader_factory=lambda experiment: None)
    # a page that links its own layout (per visitor, per URL): never answered from memory
    app.index_string = app.index_string.replace(
        "{%metas%}", '{%metas%}<link rel="preload" as="fetch" crossorigin href="/_dash-layout">', 1)
    fast_start.warm_up(app, page_files=True)
    kept = app.server.extensions["cc_page_files"].kept
    assert kept and "/_dash-layout" not in kept
    assert all(url.lstrip("/").startswith(fast_start.STATIC) for url in kept)
