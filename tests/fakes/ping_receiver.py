"""A Healthchecks-style ping endpoint on 127.0.0.1: counts the GETs it is sent."""

from __future__ import annotations

from tests.fakes.http_server import BackgroundHTTPServer, QuietHandler


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        self.fake.pings.append(self.path)
        self.send_json(200, {"ok": True})


class FakePingReceiver(BackgroundHTTPServer):
    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.pings: list[str] = []
