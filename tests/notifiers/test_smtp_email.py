"""SmtpEmailNotifier against a real aiosmtpd server with STARTTLS and AUTH on 127.0.0.1."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.notifiers import NotifierConfigError
from monitor.notifiers.base import Notification
from monitor.notifiers.smtp_email import SmtpEmailNotifier
from monitor.secrets import SecretSource
from tests.fakes.fixtures import SMTP_PASSWORD, SMTP_USER
from tests.fakes.smtp_server import HANG, FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.notifiers.conftest import make_notification

TIMEOUT_S = 0.5
FROM = "Lab Monitor <alerts@lab.example.org>"


def secrets(password: str = SMTP_PASSWORD) -> SecretSource:
    return SecretSource(env={"MONITOR_SMTP_PASSWORD": password})


def settings(server: FakeSMTPServer, tls: TLSFiles, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "security": "starttls",
        "username": SMTP_USER,
        "from_address": FROM,
        "timeout_s": TIMEOUT_S,
        "ca_file": str(tls.cert),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
def email_notification() -> Notification:
    return make_notification(address="hepatology@hospital.example.org")


@pytest.fixture
def mailer(smtp_server: FakeSMTPServer, tls_files: TLSFiles) -> SmtpEmailNotifier:
    return SmtpEmailNotifier(settings(smtp_server, tls_files), secrets())


async def test_send_delivers_over_starttls_with_login(
    mailer: SmtpEmailNotifier, smtp_server: FakeSMTPServer, email_notification: Notification
) -> None:
    result = await mailer.send(email_notification)

    assert result.outcome == "delivered"
    [mail] = smtp_server.messages
    assert mail.tls and mail.auth_user == SMTP_USER
    assert [a.success for a in smtp_server.auth_attempts] == [True]
    assert smtp_server.auth_attempts[0].tls
    assert mail.mail_from == "alerts@lab.example.org"
    assert mail.rcpt_tos == ["hepatology@hospital.example.org"]
    msg = mail.message
    assert msg["Subject"] == email_notification.subject
    assert msg["To"] == "hepatology@hospital.example.org"
    assert msg["Message-ID"] == "<alert-A7K2Q-d42@lab.example.org>"
    assert result.provider_id == msg["Message-ID"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content().strip() == email_notification.text


async def test_a_resend_carries_the_same_message_id(
    mailer: SmtpEmailNotifier, smtp_server: FakeSMTPServer, email_notification: Notification
) -> None:
    await mailer.send(email_notification)
    await mailer.send(email_notification)
    await mailer.send(make_notification(address=email_notification.address, delivery_id=43))

    ids = [m.message["Message-ID"] for m in smtp_server.messages]
    assert ids[0] == ids[1] != ids[2]


async def test_implicit_tls(tls_files: TLSFiles, email_notification: Notification) -> None:
    with FakeSMTPServer(tls_files, users={SMTP_USER: SMTP_PASSWORD}, mode="tls") as server:
        mailer = SmtpEmailNotifier(settings(server, tls_files, security="tls"), secrets())

        result = await mailer.send(email_notification)

        assert result.outcome == "delivered"
        assert server.messages[0].tls and server.messages[0].auth_user == SMTP_USER


async def test_plain_local_relay_without_login(email_notification: Notification) -> None:
    with FakeSMTPServer(None, mode="plain") as server:
        mailer = SmtpEmailNotifier(
            {"host": server.host, "port": server.port, "security": "none", "from_address": FROM},
            SecretSource(env={}),  # no username: no password needed
        )

        result = await mailer.send(email_notification)

        assert result.outcome == "delivered"
        assert not server.messages[0].tls and server.messages[0].auth_user is None


@pytest.mark.parametrize(
    ("stage", "reply", "outcome"),
    [
        ("RCPT", "451 4.3.0 Mailbox temporarily unavailable", "transient"),
        ("RCPT", "550 5.1.1 No such user", "permanent"),
        ("DATA", "451 4.3.0 Local error in processing", "transient"),
        ("DATA", "554 5.7.1 Message rejected", "permanent"),
    ],
)
async def test_reply_codes_decide_the_outcome(
    mailer: SmtpEmailNotifier,
    smtp_server: FakeSMTPServer,
    email_notification: Notification,
    stage: Any,
    reply: str,
    outcome: str,
) -> None:
    smtp_server.script(stage, reply)

    result = await mailer.send(email_notification)

    assert result.outcome == outcome
    assert result.error is not None and reply[:3] in result.error
    assert smtp_server.messages == []


async def test_wrong_password_is_permanent(
    smtp_server: FakeSMTPServer, tls_files: TLSFiles, email_notification: Notification
) -> None:
    mailer = SmtpEmailNotifier(settings(smtp_server, tls_files), secrets("wrong"))

    result = await mailer.send(email_notification)

    assert result.outcome == "permanent"
    assert result.error is not None and "535" in result.error and "auth" in result.error
    # aiosmtplib tries each mechanism the server offers (PLAIN, then LOGIN).
    assert smtp_server.auth_attempts
    assert not any(a.success for a in smtp_server.auth_attempts)
    assert smtp_server.messages == []


async def test_no_answer_to_data_is_unknown_within_the_timeout(
    mailer: SmtpEmailNotifier, smtp_server: FakeSMTPServer, email_notification: Notification
) -> None:
    smtp_server.script("DATA", HANG)

    started = time.monotonic()
    result = await mailer.send(email_notification)
    elapsed = time.monotonic() - started

    assert result.outcome == "unknown"
    assert elapsed < TIMEOUT_S + 1.5
    assert await mailer.lookup(email_notification) is None  # SMTP cannot be asked


async def test_no_answer_before_data_is_transient(
    mailer: SmtpEmailNotifier, smtp_server: FakeSMTPServer, email_notification: Notification
) -> None:
    smtp_server.script("RCPT", HANG)

    result = await mailer.send(email_notification)

    assert result.outcome == "transient"


async def test_connection_refused_is_transient(
    tls_files: TLSFiles, closed_port: int, email_notification: Notification
) -> None:
    mailer = SmtpEmailNotifier(
        {
            "host": "127.0.0.1",
            "port": closed_port,
            "from_address": FROM,
            "username": SMTP_USER,
            "ca_file": str(tls_files.cert),
            "timeout_s": TIMEOUT_S,
        },
        secrets(),
    )

    assert (await mailer.send(email_notification)).outcome == "transient"


async def test_untrusted_certificate_is_permanent(
    smtp_server: FakeSMTPServer, tls_files: TLSFiles, email_notification: Notification
) -> None:
    mailer = SmtpEmailNotifier(settings(smtp_server, tls_files, ca_file=None), secrets())

    result = await mailer.send(email_notification)

    assert result.outcome == "permanent"
    assert smtp_server.auth_attempts == []  # the password never left


async def test_validate_certs_false_accepts_a_self_signed_server(
    smtp_server: FakeSMTPServer, tls_files: TLSFiles, email_notification: Notification
) -> None:
    mailer = SmtpEmailNotifier(
        settings(smtp_server, tls_files, ca_file=None, validate_certs=False), secrets()
    )

    assert (await mailer.send(email_notification)).outcome == "delivered"


async def test_a_line_break_in_the_subject_is_permanent_not_a_crash(
    mailer: SmtpEmailNotifier, smtp_server: FakeSMTPServer
) -> None:
    notification = make_notification(address="a@b.example", subject="x\r\nBcc: evil@example.org")

    result = await mailer.send(notification)

    assert result.outcome == "permanent"
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": None}, "setting 'host' is required"),
        ({"from_address": "not an address"}, "setting 'from_address' is not an email address"),
        ({"security": "ssl"}, "setting 'security' must be one of starttls, tls, none"),
        ({"port": 70000}, "setting 'port' must be between 1 and 65535"),
        ({"validate_certs": "no"}, "setting 'validate_certs' must be true or false"),
        ({"host": "mail.example.org", "security": "none"}, "setting 'security' must be"),
        ({"ca_file": "/nonexistent/ca.pem"}, "setting 'ca_file' cannot be loaded"),
        ({"pasword": "x"}, "unknown setting(s) 'pasword'"),
    ],
)
def test_settings_are_validated_naming_the_key(
    smtp_server: FakeSMTPServer, tls_files: TLSFiles, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(NotifierConfigError, match="^smtp_email: .*" + re.escape(message)):
        SmtpEmailNotifier(settings(smtp_server, tls_files, **overrides), secrets())


def test_password_comes_from_the_named_secret(
    smtp_server: FakeSMTPServer, tls_files: TLSFiles, tmp_path: Path
) -> None:
    (tmp_path / "relay_pw").write_text("from-file\n")
    source = SecretSource(env={}, credentials_dir=tmp_path)

    SmtpEmailNotifier(settings(smtp_server, tls_files, password_secret="relay_pw"), source)
    with pytest.raises(NotifierConfigError, match="MONITOR_SMTP_PASSWORD"):
        SmtpEmailNotifier(settings(smtp_server, tls_files), source)
