"""A webhook receiver on 127.0.0.1 that checks signatures the way a real one would.

It recomputes HMAC-SHA256 over `<timestamp>.<raw body>` with its own copy of the key
(independently of the notifier's code) and answers 401 on a bad signature, like a
careful receiver. Answers can be scripted: a status, or HANG.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.fakes.http_server import BackgroundHTTPServer, QuietHandler

__all__ = ["BIG", "COOKIE", "HANG", "FakeWebhookReceiver", "ReceivedRequest"]

HANG = -1
BIG = -2  # 200 with a body far past what a sender should read (1 MiB)
COOKIE = -3  # 200 with a Set-Cookie a sender should not send back


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(QuietHandler):
    def do_POST(self) -> None:
        fake: FakeWebhookReceiver = self.fake
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        timestamp = headers.get("x-lab-monitor-timestamp", "")
        expected = hmac.new(
            fake.key.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        given = headers.get("x-lab-monitor-signature", "")
        ok = bool(timestamp) and hmac.compare_digest(given, "sha256=" + expected)
        fake._record(ReceivedRequest(self.path, headers, body, ok), self.client_address[1])
        status = fake._next_status()
        if status == HANG:
            self.hang()
            return
        if status == COOKIE and ok:
            self.send_json(200, {"ok": True}, {"Set-Cookie": "session=abc; Path=/"})
            return
        if status == BIG and ok:
            self.send_json(200, {"ok": True, "padding": "x" * (1 << 20)})
            return
        if not ok:
            self.send_json(401, {"error": "bad signature"})
            return
        extra = {"Retry-After": "7"} if status in (429, 503) else {}
        self.send_json(status, {"ok": 200 <= status < 300}, extra)


class FakeWebhookReceiver(BackgroundHTTPServer):
    """POST anywhere under `url`; `requests` holds what arrived."""

    handler_class = _Handler

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self._requests: list[ReceivedRequest] = []
        self._statuses: deque[int] = deque()
        self._peers: set[int] = set()

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self.lock:
            return list(self._requests)

    def queue_responses(self, *statuses: int) -> None:
        """Next answers: HTTP statuses (429/503 come with Retry-After: 7), HANG, BIG or COOKIE."""
        with self.lock:
            self._statuses.extend(statuses)

    @property
    def peers(self) -> set[int]:
        """The client ports requests came from: one per connection the sender opened."""
        with self.lock:
            return set(self._peers)

    def _record(self, request: ReceivedRequest, port: int) -> None:
        with self.lock:
            self._requests.append(request)
            self._peers.add(port)

    def _next_status(self) -> int:
        with self.lock:
            return self._statuses.popleft() if self._statuses else 200
