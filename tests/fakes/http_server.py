"""A stdlib HTTP server on 127.0.0.1 in a thread, with hangs a test can release.

Shared by the HTTP fakes. A thread (not the test's event loop) serves, so it works
with sync and async clients alike and a hanging handler never blocks the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

# A hang lasts until the test releases it or stops the server; this is only a
# backstop so a forgotten hang cannot wedge the test run.
MAX_HANG_S = 30.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: BackgroundHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """Base handler: no stderr access log, helpers for JSON answers."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> Any:
        return self.server.fake

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def hang(self) -> None:
        """Keep the client waiting without answering, until released."""
        self.fake.hang_until_released()
        self.close_connection = True


class BackgroundHTTPServer:
    """Lifecycle shared by the fakes: start on a free port, stop, release hangs."""

    handler_class: type[QuietHandler] = QuietHandler

    def __init__(self) -> None:
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> Self:
        self._release.clear()
        self._httpd = _Server(("127.0.0.1", 0), self.handler_class)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_hangs()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def hang_until_released(self) -> None:
        self._release.wait(MAX_HANG_S)

    def release_hangs(self) -> None:
        """Let every hanging handler finish (they answer nothing). Later hangs then
        return at once until the next start(); stop() calls this."""
        self._release.set()
