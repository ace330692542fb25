"""A small HTTP proxy in front of an ``mlflow server`` that injects faults (tests, benchmarks).

It forwards every request to the server, except those a rule picks, which get a
``503 Service Unavailable`` *before* reaching the server (so a retry can never
duplicate work: the server never saw the first try). Standard library only.

    proxy = FaultProxy(server_url, fail_rate=0.05, seed=1)   # 5% of requests fail
    proxy.start(); ...; proxy.stop()
    proxy.fail_when = lambda method, path: method == "PUT"   # every artifact upload fails
"""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


class FaultProxy:
    """Forward to ``upstream`` on 127.0.0.1; ``url`` is where clients connect."""

    def __init__(self, upstream: str, *, fail_rate: float = 0.0, seed: int = 0,
                 fail_when: Callable[[str, str], bool] | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.fail_rate = fail_rate
        self.fail_when = fail_when
        self.injected = 0
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _should_fail(self, method: str, path: str) -> bool:
        with self._lock:
            fail = (self.fail_when is not None and self.fail_when(method, path)) or \
                   (self.fail_rate > 0 and self._rng.random() < self.fail_rate)
            if fail:
                self.injected += 1
            else:
                self.forwarded += 1
            return fail

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self._body()
                if proxy._should_fail(self.command, self.path):
                    payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected fault"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _relay

        return Handler
