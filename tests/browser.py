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


def checked_page(browser: Browser, inflight: str, timeout_s: float, width: int = 1500,
                 height: int = 1000) -> Iterator[Any]:
    """A fresh context and page (``inflight``: the request-counter init script); after the
    ``yield``, fails if the browser console reported an error. Use as a fixture body."""
    ctx = browser.browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(timeout_s * 1000)
    page.add_init_script(inflight)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    ctx.close()
    assert errors == [], errors
