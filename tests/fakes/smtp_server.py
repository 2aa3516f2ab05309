"""A real SMTP server (aiosmtpd) on 127.0.0.1 with STARTTLS or implicit TLS and AUTH.

It runs in aiosmtpd's own thread and loop, so the client under test runs in the
test's loop for real. Received mail is kept with what the session proved (TLS in
use, authenticated user); RCPT and DATA answers can be scripted for fault tests.

    with FakeSMTPServer(tls_files, users={"alerts": "pw"}) as smtp:
        smtp.script("RCPT", "451 4.3.0 Try again later")
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import warnings
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Literal, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes.tls import TLSFiles

__all__ = ["HANG", "AuthAttempt", "FakeSMTPServer", "ReceivedMail"]

HANG = "HANG"  # a scripted "answer" that never answers, until released
MAX_HANG_S = 30.0
Stage = Literal["RCPT", "DATA"]
Mode = Literal["starttls", "tls", "plain"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    auth_user: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class AuthAttempt:
    mechanism: str
    user: str
    success: bool
    tls: bool


class _Controller(Controller):
    """Controller that can bind port 0: it reads the real port before its self-test."""

    def factory(self) -> SMTP:
        # aiosmtpd does not count implicit TLS as TLS and warns about AUTH without it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return cast(SMTP, super().factory())  # type: ignore[no-untyped-call]

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class _Handler:
    def __init__(self, fake: FakeSMTPServer) -> None:
        self.fake = fake

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self.fake._reply("RCPT")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        script = self.fake._next("DATA")
        if script == HANG:
            # Accepted but the answer is lost: keep it, then never answer.
            self.fake._store(server, session, envelope)
            await self.fake._hang()
            return "451 4.3.0 released"
        if script is not None:
            return script
        self.fake._store(server, session, envelope)
        return "250 2.0.0 Ok: queued"


class FakeSMTPServer:
    """`mode`: "starttls" (STARTTLS required before AUTH and mail), "tls" (implicit TLS),
    or "plain" (no TLS; then `tls_files` may be None). With `users`, AUTH is required."""

    def __init__(
        self,
        tls_files: TLSFiles | None,
        users: dict[str, str] | None = None,
        mode: Mode = "starttls",
    ) -> None:
        if mode != "plain" and tls_files is None:
            raise ValueError(f"mode {mode!r} needs tls_files")
        self.tls_files = tls_files
        self.users = dict(users or {})
        self.mode = mode
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._messages: list[ReceivedMail] = []
        self._auth: list[AuthAttempt] = []
        self._scripts: dict[str, deque[str]] = {"RCPT": deque(), "DATA": deque()}
        self._controller: _Controller | None = None

    # lifecycle

    def start(self) -> Self:
        self._release.clear()
        tls_context = self.tls_files.server_context() if self.tls_files else None
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": bool(self.users),
            # aiosmtpd only counts STARTTLS as TLS; with implicit TLS everything is.
            "auth_require_tls": self.mode == "starttls",
        }
        if self.mode == "starttls":
            kwargs.update(tls_context=tls_context, require_starttls=True)
        elif self.mode == "tls":
            kwargs.update(ssl_context=tls_context)
        self._controller = _Controller(
            _Handler(self), hostname="127.0.0.1", port=0, server_hostname="fake-smtp", **kwargs
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

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
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("server not started")
        return int(self._controller.port)

    # what tests look at

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._lock:
            return list(self._auth)

    def script(self, stage: Stage, *replies: str) -> None:
        """Answer the next RCPT or DATA commands with these lines (e.g. "550 5.1.1 No such
        user"), or HANG. Unscripted commands succeed."""
        with self._lock:
            self._scripts[stage].extend(replies)

    def release_hangs(self) -> None:
        self._release.set()

    # internals, called from the server's thread

    def _next(self, stage: Stage) -> str | None:
        with self._lock:
            queue = self._scripts[stage]
            return queue.popleft() if queue else None

    async def _reply(self, stage: Stage) -> str | None:
        script = self._next(stage)
        if script == HANG:
            await self._hang()
            return "451 4.3.0 released"
        return script

    async def _hang(self) -> None:
        await asyncio.to_thread(self._release.wait, MAX_HANG_S)

    def _store(self, server: SMTP, session: Session, envelope: Envelope) -> None:
        data = envelope.original_content or envelope.content or b""
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            data=data if isinstance(data, bytes) else data.encode(),
            tls=_uses_tls(server),
            auth_user=_auth_user(session),
        )
        with self._lock:
            self._messages.append(mail)

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        user = password = ""
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
        success = bool(user) and self.users.get(user) == password
        with self._lock:
            self._auth.append(AuthAttempt(mechanism, user, success, _uses_tls(server)))
        if not success:
            # handled=False lets aiosmtpd answer 535; handled=True would leave the
            # client waiting for a reply that never comes.
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)


def _uses_tls(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _auth_user(session: Session) -> str | None:
    if not session.authenticated:
        return None
    data = session.auth_data
    return data.login.decode() if isinstance(data, LoginPassword) else str(data)
