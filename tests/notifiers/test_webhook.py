"""WebhookNotifier against a local receiver that verifies the HMAC on its own."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from monitor.notifiers import NotifierConfigError
from monitor.notifiers.base import Notification
from monitor.notifiers.http_outcome import classify_aiohttp_error, parse_retry_after
from monitor.notifiers.webhook import WebhookNotifier
from monitor.secrets import SecretSource
from tests.fakes.tls import TLSFiles
from tests.fakes.webhook_receiver import BIG, COOKIE, HANG, FakeWebhookReceiver
from tests.notifiers.conftest import make_notification

KEY = "webhook-test-key"
TIMEOUT_S = 0.5


def secrets(key: str = KEY, name: str = "webhook_secret") -> SecretSource:
    return SecretSource(env={SecretSource.env_var(name): key})


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver(KEY) as fake:
        yield fake


def settings(receiver: FakeWebhookReceiver, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"url": receiver.url + "/alerts", "timeout_s": TIMEOUT_S}
    values.update(overrides)
    return values


@pytest.fixture
async def hook(receiver: FakeWebhookReceiver) -> AsyncIterator[WebhookNotifier]:
    notifier = WebhookNotifier(settings(receiver), secrets())
    yield notifier
    await notifier.aclose()  # as the daemon does: no session left for the collector


async def test_send_is_signed_and_delivered(
    hook: WebhookNotifier, receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    before = int(time.time())
    result = await hook.send(notification)

    assert result.outcome == "delivered"
    [request] = receiver.requests
    assert request.path == "/alerts"
    assert request.signature_ok
    assert request.headers["idempotency-key"] == "A7K2Q-42"
    assert request.headers["content-type"] == "application/json"
    assert before <= int(request.headers["x-lab-monitor-timestamp"]) <= int(time.time())
    assert request.json == {
        "delivery_id": 42,
        "alert_code": "A7K2Q",
        "patient_id": "P-0001",
        "severity": "stop",
        "recipient": "hepatology-on-call",
        "subject": notification.subject,
        "text": notification.text,
        "details": {},
    }


async def test_details_that_are_not_json_are_sent_as_text(
    hook: WebhookNotifier, receiver: FakeWebhookReceiver
) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    await hook.send(make_notification(details={"alt": 214, "drawn_at": at}))

    assert receiver.requests[0].json["details"] == {"alt": 214, "drawn_at": str(at)}


async def test_the_body_is_compact_utf8_json(
    hook: WebhookNotifier, receiver: FakeWebhookReceiver
) -> None:
    """What `json.dumps(separators=(",", ":"), ensure_ascii=False)` writes, byte for
    byte: a receiver that re-serialises to check the signature gets the same bytes."""
    import json

    note = make_notification(details={"note": "Zöe's ALT ≥ 5× ULN", "n": 1.5, 3: None})
    await hook.send(note)
    [request] = receiver.requests
    expected = json.dumps(
        WebhookNotifier.payload(note), separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()
    assert request.body == expected and request.signature_ok


async def test_a_receiver_with_another_key_refuses_it_permanently(
    receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    hook = WebhookNotifier(settings(receiver), secrets("some-other-key"))

    result = await hook.send(notification)
    await hook.aclose()

    assert result.outcome == "permanent"
    assert receiver.requests[0].signature_ok is False
    assert result.error is not None and "401" in result.error


async def test_secret_name_is_configurable(
    receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    hook = WebhookNotifier(settings(receiver, secret="ward_hook"), secrets(name="ward_hook"))

    assert (await hook.send(notification)).outcome == "delivered"
    await hook.aclose()


@pytest.mark.parametrize(
    ("status", "outcome", "retry_after"),
    [
        (202, "delivered", None),
        (429, "transient", 7.0),
        (500, "transient", None),
        (503, "transient", 7.0),
        (400, "permanent", None),
        (404, "permanent", None),
        (301, "permanent", None),
    ],
)
async def test_status_decides_the_outcome(
    hook: WebhookNotifier,
    receiver: FakeWebhookReceiver,
    notification: Notification,
    status: int,
    outcome: str,
    retry_after: float | None,
) -> None:
    receiver.queue_responses(status)

    result = await hook.send(notification)

    assert (result.outcome, result.retry_after_s) == (outcome, retry_after)


async def test_no_answer_is_unknown_within_the_timeout(
    hook: WebhookNotifier, receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    receiver.queue_responses(HANG)

    started = time.monotonic()
    result = await hook.send(notification)

    assert result.outcome == "unknown"
    assert time.monotonic() - started < TIMEOUT_S + 1.5
    assert await hook.lookup(notification) is None


async def test_connection_refused_is_transient(
    closed_port: int, notification: Notification
) -> None:
    hook = WebhookNotifier({"url": f"http://127.0.0.1:{closed_port}/x"}, secrets())

    assert (await hook.send(notification)).outcome == "transient"
    await hook.aclose()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "setting 'url' is required"),
        ({"url": "ftp://example.org/x"}, "setting 'url' must be an absolute http(s) URL"),
        ({"url": "http://hooks.example.org/x"}, "setting 'url' must use https"),
        ({"url": "https://hooks.example.org/x", "timeout_s": "5"}, "'timeout_s' must be a number"),
        ({"url": "https://hooks.example.org/x", "secrets": "k"}, "unknown setting(s) 'secrets'"),
    ],
)
def test_settings_are_validated_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(NotifierConfigError, match="^webhook: .*" + re.escape(message)):
        WebhookNotifier(values, secrets())


def test_http_to_a_private_host_needs_allow_http() -> None:
    hook = WebhookNotifier({"url": "http://10.0.0.5/hook", "allow_http": True}, secrets())
    assert hook.url == "http://10.0.0.5/hook"


def test_missing_key_names_the_secret_setting() -> None:
    with pytest.raises(NotifierConfigError, match=r"'secret'.*MONITOR_WEBHOOK_SECRET"):
        WebhookNotifier({"url": "https://hooks.example.org/x"}, SecretSource(env={}))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        ("-3", 0.0),
        ("soon", None),
        ("Wed, 25 Nov 2026 14:00:30 GMT", 30.0),
    ],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    now = 1795615200.0  # Wed, 25 Nov 2026 14:00:00 GMT
    assert parse_retry_after(header, now=now) == seconds


async def test_one_session_for_the_notifiers_life_closed_by_aclose(
    receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    hook = WebhookNotifier(settings(receiver), secrets())
    await hook.start()
    for i in range(3):
        result = await hook.send(make_notification(delivery_id=100 + i))
        assert result.outcome == "delivered"
    assert hook.http.made == 1  # one session and TLS context, not one per POST
    assert len(receiver.peers) == 1  # and one kept-alive connection for sends in turn
    await hook.aclose()
    assert hook.http.closed
    await hook.aclose()  # twice is harmless


async def test_a_session_from_a_closed_loop_is_not_reused(
    receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    hook = WebhookNotifier(settings(receiver), secrets())
    assert (await hook.send(notification)).outcome == "delivered"

    def elsewhere() -> str:
        return asyncio.run(hook.send(make_notification(delivery_id=7))).outcome

    assert await asyncio.to_thread(elsewhere) == "delivered"
    assert (await hook.send(notification)).outcome == "delivered"
    assert hook.http.made == 3
    await hook.aclose()


async def test_concurrent_sends_are_bounded_by_max_connections(
    receiver: FakeWebhookReceiver,
) -> None:
    hook = WebhookNotifier(settings(receiver), secrets())
    hook.http.max_connections = 2
    results = await asyncio.gather(*(hook.send(make_notification(delivery_id=i)) for i in range(7)))
    assert [r.outcome for r in results] == ["delivered"] * 7
    assert len(receiver.requests) == 7
    assert 1 <= len(receiver.peers) <= 2
    again = await asyncio.gather(*(hook.send(make_notification(delivery_id=i)) for i in range(4)))
    assert [r.outcome for r in again] == ["delivered"] * 4
    assert len(receiver.peers) <= 2  # the same connections, kept alive
    assert hook.http.made == 1
    await hook.aclose()


async def test_a_redirect_is_not_followed(
    hook: WebhookNotifier, receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    receiver.queue_responses(302)

    result = await hook.send(notification)

    assert result.outcome == "permanent"
    assert len(receiver.requests) == 1


async def test_a_huge_answer_is_read_only_up_to_the_bound(
    hook: WebhookNotifier, receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    receiver.queue_responses(BIG)

    result = await hook.send(notification)

    assert result.outcome == "delivered"
    assert (await hook.send(make_notification(delivery_id=9))).outcome == "delivered"
    assert len(receiver.peers) == 2  # the connection left mid-answer was not reused
    await hook.aclose()


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (aiohttp.ConnectionTimeoutError("no free connection in time"), "transient"),
        (aiohttp.SocketTimeoutError("read"), "unknown"),
        (TimeoutError(), "unknown"),
        (aiohttp.ServerDisconnectedError(), "unknown"),
        (aiohttp.ClientOSError(32, "broken pipe"), "unknown"),
        (aiohttp.InvalidURL("http://["), "permanent"),
    ],
)
def test_aiohttp_errors_split_at_whether_the_request_may_have_arrived(
    exc: Exception, outcome: str
) -> None:
    assert classify_aiohttp_error(exc).outcome == outcome


def test_the_proxy_comes_from_the_environment_once_per_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example.org:3128")
    monkeypatch.setenv("no_proxy", "hooks.internal")
    hook = WebhookNotifier({"url": "https://hooks.example.org/x"}, secrets())
    assert hook.http.proxy_for("https://hooks.example.org/x") == "http://proxy.example.org:3128"
    assert hook.http.proxy_for("https://hooks.internal/x") is None
    monkeypatch.delenv("https_proxy")
    assert hook.http.proxy_for("https://hooks.example.org/x") == "http://proxy.example.org:3128"


async def test_a_receivers_cookie_is_not_sent_back(
    receiver: FakeWebhookReceiver, notification: Notification
) -> None:
    # by name: aiohttp's own jar would keep a cookie for a host name, not for an IP
    url = f"http://localhost:{receiver.port}/alerts"
    hook = WebhookNotifier({"url": url, "timeout_s": TIMEOUT_S}, secrets())
    receiver.queue_responses(COOKIE)

    assert (await hook.send(notification)).outcome == "delivered"
    assert (await hook.send(make_notification(delivery_id=9))).outcome == "delivered"

    assert "cookie" not in receiver.requests[1].headers
    await hook.aclose()


async def test_a_certificate_we_do_not_trust_is_not_sent_to(
    receiver: FakeWebhookReceiver, notification: Notification, tls_files: TLSFiles
) -> None:
    """TLS is verified (certifi's roots): a self-signed receiver gets nothing, and the
    send is transient (retry-safe: no byte of the request left)."""
    httpd = receiver._httpd
    assert httpd is not None
    httpd.socket = tls_files.server_context().wrap_socket(httpd.socket, server_side=True)
    hook = WebhookNotifier({"url": f"https://127.0.0.1:{receiver.port}/alerts"}, secrets())

    result = await hook.send(notification)

    assert result.outcome == "transient"
    assert result.error is not None and "certificate" in result.error.lower()
    assert receiver.requests == []
    await hook.aclose()
