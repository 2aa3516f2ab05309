"""TwilioSmsNotifier against the fake Messages API over real HTTP, with the real library."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.notifiers import NotifierConfigError
from monitor.notifiers.base import Notification
from monitor.notifiers.twilio_sms import TwilioSmsNotifier
from monitor.secrets import SecretSource
from tests.fakes.twilio_api import DEFAULT_AUTH_TOKEN, FakeTwilioAPI, Reply
from tests.notifiers.conftest import make_notification

FROM = "+15005550006"
TIMEOUT_S = 0.5


def secrets(token: str = DEFAULT_AUTH_TOKEN) -> SecretSource:
    return SecretSource(env={"MONITOR_TWILIO_AUTH_TOKEN": token})


def settings(api: FakeTwilioAPI, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "account_sid": api.account_sid,
        "from_number": FROM,
        "api_base_url": api.url,
        "timeout_s": TIMEOUT_S,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
def sms(fake_twilio: FakeTwilioAPI) -> TwilioSmsNotifier:
    return TwilioSmsNotifier(settings(fake_twilio), secrets())


async def test_send_delivers_with_sid_and_body_read_back(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    result = await sms.send(notification)

    assert result.outcome == "delivered"
    [message] = fake_twilio.messages
    assert result.provider_id == message.sid and message.sid.startswith("SM")
    assert message.to == notification.address
    assert message.from_ == FROM
    assert message.body == f"{notification.text} (ref {notification.delivery_id})"
    assert notification.alert_code in message.body
    assert message.status_callback is None
    assert all(r.authorized for r in fake_twilio.requests)


async def test_status_callback_carries_the_delivery_id(fake_twilio: FakeTwilioAPI) -> None:
    sms = TwilioSmsNotifier(
        settings(fake_twilio, status_callback_base_url="https://monitor.example.org/hooks/"),
        secrets(),
    )
    await sms.send(make_notification(delivery_id=917))

    [message] = fake_twilio.messages
    assert message.status_callback == "https://monitor.example.org/hooks/twilio/status/917"


async def test_messaging_service_replaces_the_from_number(fake_twilio: FakeTwilioAPI) -> None:
    service = "MG" + "1" * 32
    sms = TwilioSmsNotifier(
        settings(fake_twilio, from_number=None, messaging_service_sid=service), secrets()
    )
    result = await sms.send(make_notification())

    assert result.outcome == "delivered"
    [message] = fake_twilio.messages
    assert message.messaging_service_sid == service and message.from_ is None


async def test_alert_code_is_appended_when_the_text_lacks_it(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI
) -> None:
    await sms.send(make_notification(text="ALT above stop line. Stop azathioprine."))

    assert (
        fake_twilio.messages[0].body == "ALT above stop line. Stop azathioprine. [A7K2Q] (ref 42)"
    )


@pytest.mark.parametrize("code", [21211, 21610, 21614, 21408])
async def test_recipient_errors_are_permanent_and_name_the_code(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification, code: int
) -> None:
    fake_twilio.queue_responses(Reply.error(400, code))

    result = await sms.send(notification)

    assert result.outcome == "permanent"
    assert result.error is not None and str(code) in result.error
    assert fake_twilio.messages == []


async def test_other_4xx_is_permanent(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    fake_twilio.queue_responses(Reply.error(404, 20404, "not found"))

    assert (await sms.send(notification)).outcome == "permanent"


async def test_wrong_auth_token_is_permanent(
    fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    sms = TwilioSmsNotifier(settings(fake_twilio), secrets("not-the-token"))

    result = await sms.send(notification)

    assert result.outcome == "permanent"
    assert result.error is not None and "401" in result.error and "20003" in result.error


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limit_and_server_errors_are_transient(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification, status: int
) -> None:
    fake_twilio.queue_responses(status)

    result = await sms.send(notification)

    assert result.outcome == "transient"
    assert result.error is not None and f"HTTP {status}" in result.error
    # The next attempt goes through: nothing sticky in the notifier.
    assert (await sms.send(notification)).outcome == "delivered"


async def test_connection_refused_is_transient(
    fake_twilio: FakeTwilioAPI, closed_port: int, notification: Notification
) -> None:
    sms = TwilioSmsNotifier(
        settings(fake_twilio, api_base_url=f"http://127.0.0.1:{closed_port}"), secrets()
    )

    result = await sms.send(notification)

    assert result.outcome == "transient"


async def test_hang_after_request_sent_is_unknown_within_the_timeout(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    fake_twilio.queue_responses(Reply.hanging(keep=True))

    started = time.monotonic()
    result = await sms.send(notification)
    elapsed = time.monotonic() - started

    assert result.outcome == "unknown"
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 1.5
    # Twilio had accepted it: lookup settles the unknown without a second send.
    settled = await sms.lookup(notification)
    assert settled is not None and settled.outcome == "delivered"
    assert settled.provider_id == fake_twilio.messages[0].sid
    assert len(fake_twilio.messages) == 1


async def test_lookup_finds_the_message_by_alert_code(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    fake_twilio.add_message(notification.address, "Lab monitor B9X1Z: other alert (ref 42)")
    # An escalation of the same alert to the same number is another delivery: no match.
    fake_twilio.add_message(notification.address, "ESCALATED Lab monitor A7K2Q (ref 57)")
    wanted = fake_twilio.add_message(notification.address, "Lab monitor A7K2Q: stop (ref 42)")
    fake_twilio.add_message("+15550000000", "Lab monitor A7K2Q: another recipient (ref 42)")

    result = await sms.lookup(notification)

    assert result is not None
    assert (result.outcome, result.provider_id) == ("delivered", wanted.sid)
    [listing] = [r for r in fake_twilio.requests if r.method == "GET"]
    assert listing.query["To"] == [notification.address]
    assert listing.query["From"] == [FROM]
    assert "DateSent>" in listing.query


async def test_lookup_follows_pages(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    wanted = fake_twilio.add_message(notification.address, "Lab monitor A7K2Q: stop (ref 42)")
    for i in range(60):  # newer messages push the match onto the second page
        fake_twilio.add_message(notification.address, f"Lab monitor OTHER{i}")

    result = await sms.lookup(notification)

    assert result is not None and result.provider_id == wanted.sid
    assert len([r for r in fake_twilio.requests if r.method == "GET"]) == 2


async def test_lookup_says_not_found_when_the_listing_has_no_match(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification
) -> None:
    fake_twilio.add_message(notification.address, "Lab monitor B9X1Z: other alert")
    old = datetime.now(UTC) - timedelta(days=5)
    fake_twilio.add_message(notification.address, "Lab monitor A7K2Q: long ago", when=old)

    result = await sms.lookup(notification)

    assert result is not None
    assert (result.outcome, result.error) == ("transient", "not found at provider")


@pytest.mark.parametrize("reply", [Reply.error(500), Reply.hanging()])
async def test_lookup_cannot_tell_when_the_listing_fails(
    sms: TwilioSmsNotifier, fake_twilio: FakeTwilioAPI, notification: Notification, reply: Reply
) -> None:
    fake_twilio.queue_responses(reply, method="GET")

    assert await sms.lookup(notification) is None


def test_settings_are_validated_naming_the_key(fake_twilio: FakeTwilioAPI) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (settings(fake_twilio, account_sid=None), "'account_sid' is required"),
        (settings(fake_twilio, from_number=None), "'from_number' is required"),
        (settings(fake_twilio, timeout_s=0), "'timeout_s' must be greater than 0"),
        (settings(fake_twilio, api_base_url="http://sms.example.org"), "'api_base_url'"),
        (settings(fake_twilio, timeout=3), "unknown setting(s) 'timeout'"),
    ]
    for values, message in cases:
        with pytest.raises(NotifierConfigError, match=f"^twilio_sms: .*{_escape(message)}"):
            TwilioSmsNotifier(values, secrets())


def test_missing_auth_token_names_the_secret_and_both_places(fake_twilio: FakeTwilioAPI) -> None:
    with pytest.raises(NotifierConfigError) as info:
        TwilioSmsNotifier(settings(fake_twilio), SecretSource(env={}))
    message = str(info.value)
    assert "'auth_token_secret'" in message and "twilio_auth_token" in message
    assert "MONITOR_TWILIO_AUTH_TOKEN" in message


def test_repr_does_not_show_the_token(sms: TwilioSmsNotifier) -> None:
    assert DEFAULT_AUTH_TOKEN not in repr(sms)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_twiml_answer_is_escaped_once_whoever_wrote_it() -> None:
    """A clinic name such as "Smith & Jones <GI>" in an answer stays well-formed XML and
    reads back as written (not double-escaped)."""
    from xml.etree import ElementTree

    from monitor.web.twilio_hooks import _twiml

    body = _twiml('Smith & Jones <GI>: call "+441632960000"').body
    root = ElementTree.fromstring(bytes(body))
    message = root.find("Message")
    assert message is not None and message.text == 'Smith & Jones <GI>: call "+441632960000"'
