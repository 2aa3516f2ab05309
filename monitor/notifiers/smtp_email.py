"""Email through an SMTP submission server (aiosmtplib).

We drive the SMTP dialogue step by step instead of `send_message()` so the phase of a
failure is known: anything before DATA is safe to retry, a lost answer to DATA is not.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any, ClassVar

import aiosmtplib
import structlog

from monitor.notifiers.base import Notification, SendResult
from monitor.notifiers.settings import ChannelSettings, is_loopback_host
from monitor.secrets import SecretSource

__all__ = ["SmtpEmailNotifier", "message_id"]

log = structlog.get_logger(__name__)

_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
_MSG_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def message_id(notification: Notification, domain: str) -> str:
    """A Message-ID fixed by delivery and alert, so a resend after a crash is the same
    message to mail systems and to people (threads, dedup), not a new one."""
    code = _MSG_ID_UNSAFE.sub("-", notification.alert_code)
    return f"<alert-{code}-d{notification.delivery_id}@{domain}>"


class SmtpEmailNotifier:
    """Settings: `host`, `port` (587/465/25 by `security`), `security` (`starttls` |
    `tls` | `none`), `username` (optional), `password_secret` (secret name, default
    `smtp_password`, read only with `username`), `from_address`, `timeout_s` (10),
    `validate_certs` (true), `ca_file` (optional CA bundle, e.g. a private CA).
    """

    name: ClassVar[str] = "smtp_email"

    def __init__(self, settings: Mapping[str, Any], secrets: SecretSource) -> None:
        s = ChannelSettings(self.name, settings)
        self.host = s.string("host")
        self.security = s.choice("security", ("starttls", "tls", "none"), "starttls")
        self.port = s.port("port", _DEFAULT_PORTS[self.security])
        self.from_address = s.string("from_address")
        _, parsed = email.utils.parseaddr(self.from_address)
        if "@" not in parsed:
            raise s.error("from_address", f"is not an email address: {self.from_address!r}")
        self._envelope_from = parsed
        self._msgid_domain = parsed.rsplit("@", 1)[1]
        self.timeout_s = s.positive_float("timeout_s", 10.0)
        self.validate_certs = s.boolean("validate_certs", True)
        self.ca_file = s.optional_str("ca_file")
        self.username = s.optional_str("username")
        self._password: str | None = None
        if self.username is not None:
            if self.security == "none" and not is_loopback_host(self.host):
                raise s.error(
                    "security",
                    "must be 'starttls' or 'tls' when 'username' is set: "
                    "the password would cross the network in clear",
                )
            self._password = s.secret("password_secret", "smtp_password", secrets)
        else:
            s.optional_str("password_secret")
        self._tls_context = self._make_tls_context(s) if self.security != "none" else None
        s.finish()

    def __repr__(self) -> str:
        return (
            f"SmtpEmailNotifier(host={self.host!r}, port={self.port}, "
            f"security={self.security!r}, username={self.username!r})"
        )

    def _make_tls_context(self, s: ChannelSettings) -> ssl.SSLContext:
        """Built once at startup so a bad `ca_file` fails there, not on the first alert."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise s.error("ca_file", f"cannot be loaded: {exc}") from None
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def build_message(self, notification: Notification) -> EmailMessage:
        """The email: the caller's subject and text, plus headers that make it traceable."""
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.from_address
        msg["To"] = notification.address
        msg["Subject"] = notification.subject
        msg["Date"] = email.utils.formatdate(usegmt=True)
        msg["Message-ID"] = message_id(notification, self._msgid_domain)
        # RFC 3834: keep vacation responders from answering an alert.
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Lab-Monitor-Alert"] = notification.alert_code
        msg["X-Lab-Monitor-Delivery"] = str(notification.delivery_id)
        body = notification.details.get("body")
        msg.set_content(body if isinstance(body, str) and body else notification.text)
        return msg

    async def send(self, notification: Notification) -> SendResult:
        try:
            msg = self.build_message(notification)
            raw = msg.as_bytes()
        except (ValueError, TypeError) as exc:
            # E.g. a line break in the subject: no retry will fix the input.
            return SendResult("permanent", error=f"cannot build the message: {exc}")
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout_s,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=self._tls_context,
        )
        phase = "connect"
        try:
            await smtp.connect()
            if self.username is not None and self._password is not None:
                phase = "auth"
                await smtp.login(self.username, self._password)
            phase = "envelope"
            await smtp.mail(self._envelope_from)
            await smtp.rcpt(notification.address)
            phase = "data"
            response = await smtp.data(raw)
        except (aiosmtplib.SMTPException, OSError) as exc:
            result = _classify(exc, phase)
        except UnicodeEncodeError as exc:
            # aiosmtplib sends the envelope as ASCII; this server path has no SMTPUTF8.
            result = SendResult("permanent", error=f"address not ASCII: {exc}")
        else:
            result = SendResult("delivered", provider_id=str(msg["Message-ID"]))
            log.debug("smtp_accepted", delivery_id=notification.delivery_id, reply=response.message)
        finally:
            await _quit_quietly(smtp)
        log.info(
            "email_send",
            delivery_id=notification.delivery_id,
            alert_code=notification.alert_code,
            phase=phase,
            outcome=result.outcome,
            error=result.error,
        )
        return result

    async def start(self) -> None:
        """Nothing kept open: one SMTP session per message, so a dropped session never
        leaves a later message's phase in doubt."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def lookup(self, notification: Notification) -> SendResult | None:
        # SMTP has no way to ask whether a message was accepted.
        return None


def _classify(exc: BaseException, phase: str) -> SendResult:
    """Reply codes decide when there is one; for lost connections and timeouts the phase
    does; anything else (no STARTTLS or AUTH offered, an untrusted certificate) is
    configuration, which no retry fixes."""
    detail = f"{type(exc).__name__} during {phase}: {exc}"
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and isinstance(code, int):
        if 400 <= code < 500:
            return SendResult("transient", error=detail)
        if code >= 500:
            return SendResult("permanent", error=detail)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        pass  # the connection dropped mid-handshake: a network fault, decided below
    elif isinstance(exc, ssl.SSLError) or not isinstance(exc, OSError):
        return SendResult("permanent", error=detail)
    if phase == "data":
        # Timeout or disconnect while DATA was in flight: the server may have queued it.
        # (aiosmtplib does not tell a lost 354 from a lost final reply; we assume the worst.)
        return SendResult("unknown", error=detail)
    # Refused, reset, timed out before DATA (SMTPConnectError, SMTPTimeoutError,
    # SMTPServerDisconnected are all OSErrors).
    return SendResult("transient", error=detail)


async def _quit_quietly(smtp: aiosmtplib.SMTP) -> None:
    """Say QUIT when still connected; the outcome is already decided."""
    if smtp.is_connected:
        try:
            await smtp.quit(timeout=1.0)
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
