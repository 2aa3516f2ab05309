"""A fake of Twilio's Messages API (2010-04-01) over real HTTP on 127.0.0.1.

Enough of the real thing for the `twilio` library to talk to it unchanged: Basic auth
with the account SID and token, form-encoded create answered 201 with a Message
resource, and the list endpoint with To/From/DateSent> filters and paging. Tests
script the next answers (errors, rate limits, hangs) with `queue_responses()`.

    with FakeTwilioAPI() as api:
        api.queue_responses(Reply.error(400, 21211))
        ...  # point the notifier's api_base_url at api.url
        assert api.messages == []
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.http_server import BackgroundHTTPServer, QuietHandler

__all__ = ["FakeTwilioAPI", "RecordedRequest", "Reply", "SentMessage"]

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "fake-twilio-token"
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)\.json$")  # `monitor doctor`

_ERROR_TEXT = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by "
    "the 'To' number",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `hang` never answers; with `keep` the message is stored
    first, as when Twilio accepted it and the answer was lost."""

    status: int = 201
    code: int | None = None
    message: str = ""
    hang: bool = False
    keep: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def created(cls) -> Reply:
        return cls(201)

    @classmethod
    def error(
        cls, status: int, code: int | None = None, message: str = "", **headers: str
    ) -> Reply:
        return cls(status, code if code is not None else status, message, headers=headers)

    @classmethod
    def hanging(cls, keep: bool = True) -> Reply:
        return cls(hang=True, keep=keep)


@dataclass
class SentMessage:
    """A message the fake accepted; `form` is the raw create request."""

    sid: str
    account_sid: str
    to: str
    body: str
    from_: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    status: str = "sent"
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_sent: datetime | None = None
    form: dict[str, list[str]] = field(default_factory=dict)

    def resource(self, status: str | None = None) -> dict[str, Any]:
        """JSON shaped like Twilio's Message resource."""
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": format_datetime(self.date_created, usegmt=True),
            "date_sent": format_datetime(self.date_sent, usegmt=True) if self.date_sent else None,
            "date_updated": format_datetime(self.date_created, usegmt=True),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": status or self.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to,
            "uri": uri,
        }


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    authorized: bool


def _account_resource(sid: str) -> dict[str, Any]:
    """The Account as Twilio's `GET /2010-04-01/Accounts/{sid}.json` returns it."""
    return {
        "sid": sid,
        "friendly_name": "lab-monitor test account",
        "status": "active",
        "type": "Full",
        "owner_account_sid": sid,
        "auth_token": "hidden",
        "date_created": "Mon, 02 Mar 2026 09:00:00 +0000",
        "date_updated": "Mon, 02 Mar 2026 09:00:00 +0000",
        "uri": f"/2010-04-01/Accounts/{sid}.json",
        "subresource_uris": {},
    }


class _Handler(QuietHandler):
    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def _handle(self, method: Literal["GET", "POST"]) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        raw = self.read_body()
        form = parse_qs(raw.decode(), keep_blank_values=True) if method == "POST" else {}
        authorized = self._authorized()
        fake._record(RecordedRequest(method, parts.path, query, form, authorized))

        account = _ACCOUNT_PATH.match(parts.path)
        if account is not None and method == "GET":
            if not authorized:
                self._error(401, 20003)
            elif account["sid"] != fake.account_sid:
                self._error(404, 20404, "The requested resource was not found")
            else:
                self.send_json(200, _account_resource(fake.account_sid))
            return
        match = _MESSAGES_PATH.match(parts.path)
        if match is None:
            self._error(404, 20404, "The requested resource was not found")
            return
        if not authorized:
            self._error(401, 20003)
            return
        if match["sid"] != fake.account_sid:
            self._error(403, 20003)
            return
        reply = fake._next_reply(method)
        if method == "POST":
            if fake.post_delay_s:
                time.sleep(fake.post_delay_s)  # the provider's latency, for crash tests
            self._create(form, reply)
        else:
            self._list(parts.path, query, reply)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (user, password) == (self.fake.account_sid, self.fake.auth_token)

    def _error(self, status: int, code: int, message: str = "", **headers: str) -> None:
        self.send_json(
            status,
            {
                "code": code,
                "message": message or _ERROR_TEXT.get(code, "Error"),
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )

    def _create(self, form: dict[str, list[str]], reply: Reply | None) -> None:
        def first(key: str) -> str | None:
            values = form.get(key)
            return values[0] if values else None

        to, body = first("To"), first("Body")
        from_, service = first("From"), first("MessagingServiceSid")
        if reply is None or (not reply.hang and reply.status < 300):
            # Twilio's own validation, so a malformed request is not silently "sent".
            if not to:
                self._error(400, 21604, "A 'To' phone number is required.")
                return
            if not from_ and not service:
                self._error(400, 21603, "A 'From' phone number is required.")
                return
            if not body:
                self._error(400, 21602, "Message body is required.")
                return
        if reply is not None and reply.hang:
            if reply.keep and to and body:
                self.fake._store(to, body, from_, service, first("StatusCallback"), form)
            self.hang()
            return
        if reply is not None and reply.status >= 300:
            self._error(reply.status, reply.code or reply.status, reply.message, **reply.headers)
            return
        assert to and body
        message = self.fake._store(to, body, from_, service, first("StatusCallback"), form)
        # Like Twilio, the create answer says "queued" and has no date_sent yet.
        payload = message.resource(status="queued")
        payload["date_sent"] = None
        self.send_json(reply.status if reply else 201, payload)

    def _list(self, path: str, query: dict[str, list[str]], reply: Reply | None) -> None:
        if reply is not None and reply.hang:
            self.hang()
            return
        if reply is not None and reply.status >= 300:
            self._error(reply.status, reply.code or reply.status, reply.message, **reply.headers)
            return

        def first(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        page_size = int(first("PageSize") or 50)
        page = int(first("Page") or 0)
        to, from_ = first("To"), first("From")
        sent_after = first("DateSent>")
        chosen = [
            m
            for m in reversed(self.fake.messages)  # newest first, like Twilio
            if (to is None or m.to == to)
            and (from_ is None or m.from_ == from_)
            and (
                sent_after is None
                or (m.date_sent is not None and m.date_sent.date().isoformat() >= sent_after[:10])
            )
        ]
        window = chosen[page * page_size : (page + 1) * page_size]
        filters = {k: v[0] for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            return path + "?" + urlencode({**filters, "PageSize": page_size, "Page": number})

        has_next = (page + 1) * page_size < len(chosen)
        self.send_json(
            200,
            {
                "messages": [m.resource() for m in window],
                "end": page * page_size + max(len(window) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if has_next else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": page * page_size,
                "uri": page_uri(page),
            },
        )


class FakeTwilioAPI(BackgroundHTTPServer):
    """The fake service. `url` is the `api_base_url` to give the notifier."""

    handler_class = _Handler

    def __init__(
        self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._messages: list[SentMessage] = []
        self._requests: list[RecordedRequest] = []
        self._replies: dict[str, deque[Reply]] = {"POST": deque(), "GET": deque()}
        self._cond = threading.Condition(self.lock)
        self.post_delay_s = 0.0

    @property
    def messages(self) -> list[SentMessage]:
        """Accepted messages, oldest first (a copy)."""
        with self.lock:
            return list(self._messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, including refused ones (a copy)."""
        with self.lock:
            return list(self._requests)

    def queue_responses(
        self, *replies: Reply | int, method: Literal["POST", "GET"] = "POST"
    ) -> None:
        """Script the next answers to `method`; an int is a status with a generic body.

        Unscripted requests are served normally (201 for create, 200 for list).
        """
        scripted = [
            r if isinstance(r, Reply) else Reply(r) if r < 300 else Reply.error(r) for r in replies
        ]
        with self.lock:
            self._replies[method].extend(scripted)

    def add_message(
        self, to: str, body: str, from_: str | None = "+15005550006", when: datetime | None = None
    ) -> SentMessage:
        """Seed a message as if sent earlier (for lookup tests)."""
        message = self._store(to, body, from_, None, None, {})
        if when is not None:
            message.date_created = message.date_sent = when
        return message

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until `count` requests arrived (for a test racing a hanging client)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._requests) >= count, timeout)
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _next_reply(self, method: str) -> Reply | None:
        with self.lock:
            queue = self._replies[method]
            return queue.popleft() if queue else None

    def _store(
        self,
        to: str,
        body: str,
        from_: str | None,
        service: str | None,
        status_callback: str | None,
        form: dict[str, list[str]],
    ) -> SentMessage:
        now = datetime.now(UTC)
        message = SentMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=self.account_sid,
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=service,
            status_callback=status_callback,
            date_created=now,
            date_sent=now,  # the fake "sends" at once
            form=form,
        )
        with self.lock:
            self._messages.append(message)
        return message
