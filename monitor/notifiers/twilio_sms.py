"""SMS through Twilio's Messages API (or a Twilio-compatible gateway).

We use the official `twilio` library for the API shapes and error parsing, but give it
our own small httpx transport: twilio's `AsyncTwilioHttpClient` ignores its `timeout`
argument on async requests (9.13), needs aiohttp (not otherwise a dependency), and
aiohttp's total timeout cannot tell "never connected" (safe to retry) from "sent, no
answer" (must be settled by `lookup`). The transport keeps one httpx client (one
pool, one TLS context) for the notifier's life, for sends and lookup pages alike,
closed by `aclose()`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import structlog
from twilio.base import values
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from monitor.notifiers.base import Notification, SendResult
from monitor.notifiers.http_client import SharedClient
from monitor.notifiers.http_outcome import classify_transport_error
from monitor.notifiers.settings import ChannelSettings
from monitor.secrets import SecretSource

__all__ = ["TWILIO_API_BASE_URL", "TwilioSmsNotifier"]

log = structlog.get_logger(__name__)

TWILIO_API_BASE_URL = "https://api.twilio.com"
# Twilio filters DateSent by calendar day (UTC); two days covers a send just before
# midnight settled just after it.
LOOKUP_WINDOW = timedelta(days=2)
# Past this many messages to one number in the window we stop and say "cannot tell".
LOOKUP_LIMIT = 200
_ACCOUNT_SID = re.compile(r"^[A-Za-z0-9-]+$")


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]  # twilio is untyped
    """twilio's async HTTP client interface over httpx, with a real per-request timeout.

    One httpx client for the notifier's life (see `SharedClient`), reused by every
    send and lookup page.
    """

    def __init__(self, timeout_s: float) -> None:
        # The logger is unused: unlike twilio's clients we do not log request lines,
        # which carry the recipient's number.
        super().__init__(logger=logging.getLogger(__name__), is_async=True, timeout=timeout_s)
        self.timeout_s = timeout_s
        self.http = SharedClient(timeout_s)

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        response = await self.http.get().request(
            method,
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout or self.timeout_s,
            follow_redirects=allow_redirects,
        )
        return Response(response.status_code, response.text, response.headers)


class TwilioSmsNotifier:
    """Settings: `account_sid`; `from_number` and/or `messaging_service_sid`;
    `auth_token_secret` (secret name, default `twilio_auth_token`); `api_base_url`
    (default Twilio's; another for tests and Twilio-compatible gateways); `timeout_s`
    (10); `status_callback_base_url` (optional public base URL for delivery receipts).
    """

    name: ClassVar[str] = "twilio_sms"

    def __init__(self, settings: Mapping[str, Any], secrets: SecretSource) -> None:
        s = ChannelSettings(self.name, settings)
        self.account_sid = s.string("account_sid")
        if not _ACCOUNT_SID.fullmatch(self.account_sid):
            raise s.error("account_sid", f"has unexpected characters: {self.account_sid!r}")
        self.from_number = s.optional_str("from_number")
        self.messaging_service_sid = s.optional_str("messaging_service_sid")
        if self.from_number is None and self.messaging_service_sid is None:
            raise s.error("from_number", "is required (or set 'messaging_service_sid')")
        self.api_base_url = s.url("api_base_url", TWILIO_API_BASE_URL)
        self.timeout_s = s.positive_float("timeout_s", 10.0)
        callback = s.optional_str("status_callback_base_url")
        self.status_callback_base_url = (
            s.url("status_callback_base_url") if callback is not None else None
        )
        auth_token = s.secret("auth_token_secret", "twilio_auth_token", secrets)
        s.finish()

        self.transport = HttpxTwilioClient(self.timeout_s)
        self._client = Client(
            username=self.account_sid,
            password=auth_token,
            account_sid=self.account_sid,
            http_client=self.transport,
        )
        # TWILIO_EDGE / TWILIO_REGION from the environment would rewrite the host.
        self._client.edge = None
        self._client.region = None
        # Every Messages URL is built from the Api domain's base_url.
        self._client.api.base_url = self.api_base_url

    async def start(self) -> None:
        self.transport.http.get()

    async def aclose(self) -> None:
        await self.transport.http.aclose()

    @property
    def receipts(self) -> bool:
        """With a status callback, acceptance is `sent`; Twilio's receipt says `delivered`."""
        return self.status_callback_base_url is not None

    def __repr__(self) -> str:
        return f"TwilioSmsNotifier(account_sid={self.account_sid!r}, api={self.api_base_url!r})"

    def body(self, notification: Notification) -> str:
        """The SMS text: the caller's text, which must carry the alert code for `lookup`.

        If the caller forgot the code we append it rather than refuse: an alert that
        goes out without a lookup key beats one that does not go out.
        """
        text = notification.text
        if notification.alert_code not in text:
            log.warning(
                "sms_text_without_alert_code",
                delivery_id=notification.delivery_id,
                alert_code=notification.alert_code,
            )
            text = f"{text} [{notification.alert_code}]"
        return f"{text} {delivery_ref(notification)}"

    async def send(self, notification: Notification) -> SendResult:
        params: dict[str, Any] = {"to": notification.address, "body": self.body(notification)}
        if self.from_number is not None:
            params["from_"] = self.from_number
        if self.messaging_service_sid is not None:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.status_callback_base_url is not None:
            params["status_callback"] = (
                f"{self.status_callback_base_url}/twilio/status/{notification.delivery_id}"
            )
        result = await self._create(params)
        log.info(
            "sms_send",
            delivery_id=notification.delivery_id,
            alert_code=notification.alert_code,
            outcome=result.outcome,
            provider_id=result.provider_id,
            error=result.error,
        )
        return result

    async def _create(self, params: dict[str, Any]) -> SendResult:
        """One Messages create call, its outcome classified (shared by both sends)."""
        try:
            message = await self._client.messages.create_async(**params)
        except TwilioRestException as exc:
            return _classify_rest_error(exc.status, exc.code, exc.msg)
        except TwilioException as exc:
            # TwilioServiceException (RFC 9457 errors) shares status/code but not msg.
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                detail = getattr(exc, "detail", None) or getattr(exc, "title", "")
                return _classify_rest_error(status, getattr(exc, "code", None), str(detail))
            else:
                return SendResult("unknown", error=f"twilio error: {exc}")
        except httpx.TransportError as exc:
            return classify_transport_error(exc)
        except ValueError as exc:
            # A 2xx whose body is not JSON: the provider took the request but we have
            # no SID; lookup() can find it.
            return SendResult("unknown", error=f"unreadable answer from provider: {exc}")
        else:
            sid = getattr(message, "sid", None)
            if sid:
                return SendResult("delivered", provider_id=str(sid))
            else:
                return SendResult("unknown", error="provider accepted without a message SID")

    async def send_text(self, address: str, text: str) -> SendResult:
        """A patient SMS (issue 14): exactly the template's text, no alert code and no
        delivery reference appended (neither means anything to a patient)."""
        params: dict[str, Any] = {"to": address, "body": text}
        if self.from_number is not None:
            params["from_"] = self.from_number
        if self.messaging_service_sid is not None:
            params["messaging_service_sid"] = self.messaging_service_sid
        result = await self._create(params)
        log.info("patient_sms_send", outcome=result.outcome, provider_id=result.provider_id)
        return result

    async def _recent_to(self, address: str, **log_kw: Any) -> list[Any] | None:
        """Messages from us to `address` in the lookup window, or None when Twilio
        cannot be asked (the caller then cannot tell whether a send happened)."""
        since = (datetime.now(UTC) - LOOKUP_WINDOW).strftime("%Y-%m-%d")
        try:
            return list(
                await self._client.messages.list_async(
                    to=address,
                    from_=self.from_number if self.from_number is not None else values.unset,
                    date_sent_after=since,
                    limit=LOOKUP_LIMIT,
                    page_size=50,
                )
            )
        except (TwilioException, httpx.HTTPError, ValueError) as exc:
            log.warning("sms_lookup_failed", error=f"{type(exc).__name__}: {exc}", **log_kw)
            return None

    async def lookup_text(self, address: str, text: str) -> SendResult | None:
        """Whether a patient SMS of exactly this text went to this number in the last
        days: delivered (with its SID), "not found at provider" (transient: safe to send
        again) in a complete listing, or None when the listing cannot tell. A patient
        text carries no reference, so the match is the whole text; every scheduled text
        names its own due date, so two different messages do not read the same."""
        messages = await self._recent_to(address, purpose="patient_sms")
        if messages is None:
            return None
        for message in messages:
            if (message.body or "") == text:
                log.info("patient_sms_lookup_found", provider_id=message.sid)
                return SendResult("delivered", provider_id=str(message.sid))
        if len(messages) >= LOOKUP_LIMIT:
            return None
        return SendResult("transient", error="not found at provider")

    async def lookup(self, notification: Notification) -> SendResult | None:
        """Find a message to this number carrying the alert code, sent in the last days.

        A match settles the send as delivered. No match in a complete listing means
        Twilio never accepted it ("not found at provider", transient: safe to resend).
        A failed or truncated listing cannot tell, so None.

        The match needs both the alert code and this delivery's reference, so an
        escalation or reminder to the same number is never taken for this send.
        Limit: Twilio's DateSent filter may leave out messages still queued.
        """
        messages = await self._recent_to(notification.address, delivery_id=notification.delivery_id)
        if messages is None:
            return None
        ref = delivery_ref(notification)
        for message in messages:
            body = message.body or ""
            if notification.alert_code in body and ref in body:
                log.info(
                    "sms_lookup_found",
                    delivery_id=notification.delivery_id,
                    provider_id=message.sid,
                    status=str(message.status),
                )
                return SendResult("delivered", provider_id=str(message.sid))
        if len(messages) >= LOOKUP_LIMIT:
            return None
        return SendResult("transient", error="not found at provider")


def delivery_ref(notification: Notification) -> str:
    """A short tag that makes each delivery's SMS findable at Twilio on its own."""
    return f"(ref {notification.delivery_id})"


# Twilio error codes for a recipient that can never receive from us; any other 4xx is
# also permanent, these only get a readable reason.
_PERMANENT_CODES = {
    21211: "invalid 'To' number",
    21408: "region not enabled for this account",
    21610: "recipient unsubscribed (replied STOP)",
    21614: "'To' number is not a mobile number",
}


def _classify_rest_error(status: int, code: int | None, message: str) -> SendResult:
    """429 and 5xx transient; every other 4xx permanent; the Twilio code is in the text."""
    reason = _PERMANENT_CODES.get(code) if code is not None else None
    text = f"HTTP {status}, Twilio error {code}: {reason + ': ' if reason else ''}{message}"
    if status == 429 or status >= 500:
        return SendResult("transient", error=text)
    if 400 <= status < 500:
        return SendResult("permanent", error=text)
    # 3xx: we do not follow redirects; a misconfigured api_base_url.
    return SendResult("permanent", error=text)
