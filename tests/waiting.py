"""Waiting for conditions, never for a fixed time: tests must hold on a busy machine.

* :func:`wait_until` polls a predicate until it holds, with a generous timeout, and fails
  with a message saying what was awaited and what was last seen.
* :data:`INFLIGHT` (an init script) and :func:`settle`: wait until the page has no Dash
  request in flight and has drawn what arrived.
* :func:`dash_callback`: a predicate on Playwright responses for one Dash callback
  request, to wait for the app to have *processed* an event (``page.expect_response``)
  before asserting that nothing changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

#: Long enough for two CPU burners beside the suite on two cores; a passing wait returns early.
TIMEOUT_S = 60.0

#: Counts Dash callback requests in flight, so tests act only on a settled page (several
#: callbacks write the shared state; acting mid-chain would race them like a very fast user).
INFLIGHT = """
window.__inflight = 0;
const _fetch = window.fetch;
window.fetch = function (...args) {
  window.__inflight += 1;
  return _fetch.apply(this, args).finally(() => { window.__inflight -= 1; });
};
"""

#: Resolves after the browser has drawn two frames (what arrived so far is on screen).
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def wait_until(predicate: Callable[[], T], timeout: float = TIMEOUT_S,
               message: str | Callable[[], str] = "condition", interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; return that, or fail saying what was
    awaited (``message``, or a callable giving it at the time of failure, e.g. with the last state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {value!r}")
        time.sleep(interval)


def wait_until_or_false(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T | bool:
    """Poll ``predicate`` for up to ``timeout`` seconds; its value, or False (for retry loops)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value or False


def settle(page: Any, quiet_s: float = 0.4, timeout: float = TIMEOUT_S) -> None:
    """Wait until no Dash request has been in flight for ``quiet_s`` and the page has drawn.

    Needs :data:`INFLIGHT` as an init script of the page.
    """
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        busy = page.evaluate("() => window.__inflight || 0")
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            page.evaluate(TWO_FRAMES)
            if not page.evaluate("() => window.__inflight || 0"):
                return
        time.sleep(0.05)
    raise AssertionError(f"the page still had Dash requests in flight after {timeout:.0f} s")


def painted(page: Any) -> None:
    """Wait until the browser has drawn two frames (after the awaited content arrived)."""
    page.evaluate(TWO_FRAMES)


def dash_callback(changed: str, contains: str | None = None) -> Callable[[Any], bool]:
    """A predicate on Playwright responses: a Dash callback triggered by ``changed`` (an
    ``"id.property"``), whose request body contains ``contains`` if given."""

    def matches(response: Any) -> bool:
        if not urlsplit(response.url).path.endswith("/_dash-update-component"):  # Dash adds ?endId=
            return False
        try:
            body = response.request.post_data or ""
            payload = json.loads(body)
        except ValueError:
            return False
        if changed not in (payload.get("changedPropIds") or []):
            return False
        return contains is None or contains in body

    return matches
