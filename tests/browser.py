"""Browser-test plumbing: serve a Dash app in a thread, drive Debian's Chromium with Playwright."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from testing.local_server import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class ServedApp:
    """A Dash app served on 127.0.0.1 by a threaded werkzeug server."""

    server: BaseWSGIServer
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def serve(app: Any, port: int | None = None) -> ServedApp:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = port or free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return ServedApp(server, thread, f"http://127.0.0.1:{port}")


@dataclass
class Browser:
    """A headless Chromium with one page whose console errors are collected."""

    playwright: Any
    browser: Any
    page: Any
    errors: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.browser.close()
        self.playwright.stop()


def launch(width: int = 1600, height: int = 1000) -> Browser:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    b = Browser(pw, browser, page)
    page.on("console", lambda m: b.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: b.errors.append(str(e)))
    return b


def iter_browser() -> Iterator[Browser]:
    b = launch()
    try:
        yield b
    finally:
        b.close()


#: True once Plotly has the point with this customdata under the pointer in a graph (by the id of
#: its dcc.Graph): a click then picks it. Evaluated with ``[graph, customdata]``.
HOVERED = """([graph, cd]) => {
  const g = document.querySelector('#' + graph + ' .js-plotly-plot');
  return !!(g && (g._hoverdata || []).some(p => p.customdata === cd
    || (Array.isArray(p.customdata) && p.customdata[0] === cd)));
}"""


def watched_page(browser: Browser, init_script: str | None, timeout_s: float, **context: Any) -> tuple[Any, Any, list[str]]:
    """A page in a fresh context (``context``: Playwright's new_context options) with
    ``init_script`` (if any) and ``timeout_s`` as its default; the list collects console errors and page errors."""
    ctx = browser.browser.new_context(**context)
    pg = ctx.new_page()
    pg.set_default_timeout(timeout_s * 1000)
    if init_script:
        pg.add_init_script(init_script)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    return pg, ctx, errors
