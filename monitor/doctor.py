"""`monitor doctor`: will this install work? Each finding in plain words.

Runs the service's own strict loading (`check-config`), then tries what the service
will need, against the configured endpoints: the database opens and its schema is
current; each channel's credentials work (SMTP: connect, TLS, EHLO and login;
Twilio: fetch the Account with the SID and token); the protocol profiles are
approved; the web and MLLP ports are free; the clock agrees with the database's.
A FAIL is something that stops alerts reaching people; a WARN is something to fix.
Exit 2 when anything FAILs.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import typer

from monitor.config_check import CheckedConfig, check
from monitor.notifiers.base import Notifier

Level = Literal["ok", "warn", "fail"]
CLOCK_SKEW_S = 30.0


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    text: str
    refused: bool = False  # the server answered and said no (credentials, account)

    def __str__(self) -> str:
        return f"{self.level.upper():4} {self.what}: {self.text}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def probe_smtp(name: str, notifier: Any) -> Finding:
    """Connect, TLS, EHLO and (with a username) log in; send nothing."""
    import aiosmtplib

    what = f"channel {name}"
    smtp = aiosmtplib.SMTP(
        hostname=notifier.host,
        port=notifier.port,
        timeout=notifier.timeout_s,
        use_tls=notifier.security == "tls",
        start_tls=notifier.security == "starttls",
        tls_context=notifier._tls_context,
    )
    where = f"{notifier.host}:{notifier.port}"
    try:
        await smtp.connect()
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Finding("fail", what, f"cannot reach the SMTP server {where} ({_one_line(exc)})")
    try:
        await smtp.ehlo()
        if notifier.username is not None:
            try:
                await smtp.login(notifier.username, notifier._password)
            except aiosmtplib.SMTPAuthenticationError as exc:
                return Finding(
                    "fail",
                    what,
                    f"the SMTP server {where} refused the login of {notifier.username!r} "
                    f"({exc.code} {exc.message.strip()}): check the smtp_password secret",
                    refused=True,
                )
        return Finding(
            "ok",
            what,
            f"SMTP {where} answers"
            + (f" and accepts the login of {notifier.username!r}" if notifier.username else ""),
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Finding("fail", what, f"SMTP {where}: {_one_line(exc)}")
    finally:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


async def probe_twilio(name: str, notifier: Any) -> Finding:
    """Fetch the Account with the configured SID and token; send nothing."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    what = f"channel {name}"
    try:
        account = await notifier._client.api.v2010.accounts(notifier.account_sid).fetch_async()
    except TwilioRestException as exc:
        if exc.status in (401, 403):
            why = "the account SID and auth token were refused: check the twilio_auth_token secret"
        elif exc.status == 404:
            why = f"no account {notifier.account_sid}: check account_sid"
        else:
            why = f"HTTP {exc.status} ({exc.msg})"
        refused = exc.status in (401, 403, 404)
        return Finding("fail", what, f"Twilio at {notifier.api_base_url}: {why}", refused)
    except (TwilioException, OSError, Exception) as exc:  # transport errors come as httpx's
        return Finding(
            "fail", what, f"cannot reach Twilio at {notifier.api_base_url} ({_one_line(exc)})"
        )
    status = getattr(account, "status", None)
    if status not in (None, "active"):
        return Finding(
            "fail", what, f"Twilio account {notifier.account_sid} is {status}", refused=True
        )
    return Finding("ok", what, f"Twilio account {notifier.account_sid} is active")


async def probe_channels(notifiers: dict[str, Notifier]) -> list[Finding]:
    from monitor.notifiers.base import close_notifier, start_notifier

    out: list[Finding] = []
    for name, notifier in sorted(notifiers.items()):
        kind = getattr(notifier, "name", type(notifier).__name__)
        if kind == "smtp_email":
            out.append(await probe_smtp(name, notifier))
        elif kind == "twilio_sms":
            await start_notifier(notifier)
            try:
                out.append(await probe_twilio(name, notifier))
            finally:
                await close_notifier(notifier)
        elif kind == "console":
            out.append(Finding("ok", f"channel {name}", "console: writes to the log only"))
        else:
            out.append(Finding("ok", f"channel {name}", f"{kind}: settings and secret present"))
    return out


def check_channels_at_start(path: str | Path | None, secrets: Any) -> None:
    """`[daemon] check_channels_at_start`: refuse the start (StartupError, one line) when a
    channel's server refuses its credentials; log an unreachable one and go on (the
    dispatcher retries, and the auditor raises a gap if nothing gets out)."""
    import structlog

    from monitor.startup import StartupError

    log = structlog.get_logger(__name__)
    checked = check(path, secrets)  # fresh notifiers: the service starts its own
    findings = asyncio.run(probe_channels(checked.notifiers))
    refused = [f for f in findings if f.refused]
    for f in findings:
        if f.level == "fail" and not f.refused:
            log.error("startup.channel_unreachable", channel=f.what, reason=f.text)
    if refused:
        raise StartupError("; ".join(f"{f.what}: {f.text}" for f in refused))


def check_database(url: str) -> list[Finding]:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.services.readiness import _heads
    from monitor.startup import db_error_line
    from monitor.store.db import make_engine

    try:
        engine = make_engine(url)
    except OSError as exc:
        return [Finding("fail", "database", f"{url}: cannot open it ({_one_line(exc)})")]
    where = engine.url.render_as_string(hide_password=True)
    out: list[Finding] = []
    try:
        current, heads = _heads(engine)
        if current == heads:
            out.append(
                Finding("ok", "database", f"{where} opens; schema current ({', '.join(heads)})")
            )
        elif not current and engine.dialect.name == "sqlite":
            out.append(Finding("ok", "database", f"{where}: new; `monitor run` will create it"))
        else:
            out.append(
                Finding(
                    "fail",
                    "database",
                    f"{where}: schema at {', '.join(sorted(current)) or 'nothing'}, this version "
                    f"needs {', '.join(sorted(heads))}: run `monitor db upgrade`",
                )
            )
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                db_now = conn.execute(text("SELECT now()")).scalar_one()
            skew = abs((datetime.now(UTC) - db_now).total_seconds())
            level: Level = "warn" if skew > CLOCK_SKEW_S else "ok"
            out.append(
                Finding(level, "clock", f"this machine and the database differ by {skew:.1f} s")
            )
    except SQLAlchemyError as exc:
        out.append(Finding("fail", "database", f"{where}: cannot open it ({db_error_line(exc)})"))
    finally:
        engine.dispose()
    return out


def check_port(what: str, host: str, port: int) -> Finding:
    if port == 0:
        return Finding("ok", what, "any free port (0)")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        return Finding(
            "warn",
            what,
            f"{host}:{port} is busy ({exc.strerror or exc}): the service already running, or "
            "another program; `monitor run` refuses a busy port",
        )
    return Finding("ok", what, f"{host}:{port} is free")


def check_clock() -> Finding:
    now = datetime.now(UTC)
    if now.year < 2025:
        return Finding("fail", "clock", f"the system clock says {now:%Y-%m-%d}: set it (NTP)")
    return Finding("ok", "clock", f"system time {now:%Y-%m-%d %H:%M:%S} UTC")


def diagnose(path: str | Path | None) -> list[Finding]:
    checked: CheckedConfig = check(path)
    if checked.problems:
        return [Finding("fail", "config", f"{checked.file}: {p}") for p in checked.problems]
    assert checked.settings is not None and checked.routing is not None
    from monitor.config_check import unreachable_critical

    raw = checked.settings.raw
    out = [Finding("ok", "config", f"{checked.file} passes check-config")]
    nobody = unreachable_critical(checked.routing)
    if nobody:
        level: Level = "warn" if raw.get("daemon", {}).get("console_only") else "fail"
        out.append(Finding(level, "routes", nobody))
    for proto in checked.protocols.values():
        if proto.approval.approved:
            out.append(Finding("ok", f"profile {proto.label}", "approved"))
        else:
            out.append(
                Finding("warn", f"profile {proto.label}", "UNAPPROVED: no clinician signed it off")
            )
    out += check_database(checked.settings.database_url)
    out += asyncio.run(probe_channels(checked.notifiers))
    web = raw.get("web", {})
    if web.get("enabled", True):
        out.append(check_port("web", str(web.get("host", "127.0.0.1")), int(web.get("port", 8080))))
    mllp = raw.get("sources", {}).get("mllp") or {}
    if mllp.get("enabled"):
        out.append(
            check_port(
                "sources.mllp", str(mllp.get("host", "127.0.0.1")), int(mllp.get("port", 2575))
            )
        )
    out.append(check_clock())
    return out


def doctor_cmd(ctx: typer.Context) -> None:
    """Check this install works: config, database, each channel's credentials against its
    server, profiles, ports, clock. Exit 2 when anything fails."""
    root = ctx.find_root().obj
    findings = diagnose(root if isinstance(root, Path) else None)
    for f in findings:
        typer.echo(str(f))
    failed = sum(1 for f in findings if f.level == "fail")
    warned = sum(1 for f in findings if f.level == "warn")
    typer.echo(
        f"{failed} problem(s) that stop alerts reaching people, {warned} warning(s)."
        if failed or warned
        else "All checks passed."
    )
    if failed:
        raise typer.Exit(2)
