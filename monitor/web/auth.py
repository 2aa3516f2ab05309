"""Who is asking: web sessions (cookie), bearer tokens (API), roles and login limits.

The session cookie is a random token; the database keeps its SHA-256 only, so a
copy of the database does not sign anyone in. A session ends after
`session_idle_minutes` without a request and `session_max_hours` after login,
whichever comes first, on the host's clock (tests inject a ManualClock). Failed
logins are rate limited per username and per client address over a sliding
window, counted from the audit log so the daemon and `monitor web` share it:
per (account, address) pair and per address, so nobody can lock another person
out from somewhere else; an account failing from many addresses is slowed down
(a growing delay between attempts), not locked, and an address the account has
signed in from before is not slowed at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Depends, HTTPException, Request
from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.accounts import at_least, digest, user_for_token
from monitor.store.accounts import AuditRow, UserRow, WebSessionRow
from monitor.store.db import session_scope
from monitor.web.audit import Actor
from monitor.web.host import Host, WebSettings

log = structlog.get_logger(__name__)

SESSION_COOKIE = "lm_session"
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """A signed-in user (web) or the user behind a bearer token (api)."""

    user_id: int
    username: str
    role: str
    via: str
    ip: str | None
    session_id: str | None = None
    csrf: str | None = None

    def can(self, role: str) -> bool:
        return at_least(self.role, role)

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role, self.via, self.ip)


class LoginRequired(Exception):
    """No live session: the page handler answers with a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class Forbidden(Exception):
    """Signed in, but the role does not allow this."""

    def __init__(self, needed: str) -> None:
        super().__init__(needed)
        self.needed = needed


def host_of(request: Request) -> Host:
    host: Host = request.app.state.host
    return host


def settings_of(request: Request) -> WebSettings:
    web: WebSettings = request.app.state.web
    return web


def client_ip(request: Request) -> str | None:
    """The peer address. uvicorn rewrites it from X-Forwarded-For only for a peer in
    `[web] trusted_proxies` (monitor/web/server.py); nobody else can choose it."""
    return request.client.host if request.client else None


def secure_cookies(request: Request) -> bool:
    return settings_of(request).secure_cookies or request.url.scheme == "https"


# --- sessions ---------------------------------------------------------------------


def start_session(
    session: Session, user: UserRow, ip: str | None, now: datetime, web: WebSettings
) -> str:
    """A new session for `user`; returns the cookie value (kept nowhere else)."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    session.add(
        WebSessionRow(
            id=digest(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=web.session_max_hours),
            ip=ip,
        )
    )
    return token


def live_session(
    session: Session, token: str, now: datetime, web: WebSettings
) -> tuple[WebSessionRow, UserRow] | None:
    """The session and its user if the session is still valid; ends it if it has expired."""
    row = session.get(WebSessionRow, digest(token))
    if row is None or row.ended_at is not None:
        return None
    user = session.get(UserRow, row.user_id)
    idle = now - row.last_seen_at > timedelta(minutes=web.session_idle_minutes)
    if user is None or user.disabled or idle or now >= row.expires_at:
        row.ended_at = now
        session.add(row)
        log.info("session.expired", user_id=row.user_id, idle=idle)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        session.add(row)
    return row, user


def end_session(session: Session, session_id: str, now: datetime) -> None:
    row = session.get(WebSessionRow, session_id)
    if row is not None and row.ended_at is None:
        row.ended_at = now
        session.add(row)


KNOWN_ADDRESS_DAYS = 30
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def verify_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, new hash if the stored one uses old parameters); an unknown user is
    checked against a dummy hash so both take the same time. No database involved."""
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if stored is None or not password:
        return False, None
    return True, _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None


def login_refusal(
    session: Session, username: str, ip: str | None, now: datetime, web: WebSettings
) -> str | None:
    """Why a login attempt is refused before its password is even checked, if it is.

    Failures count per (account, address) and per address; an account failing from
    everywhere together waits `2 ** (n - login_slowdown_after_failures)` seconds (at
    most `login_max_delay_seconds`) after its last failure, except from an address
    it signed in from in the last 30 days."""
    name = username.strip().lower()[:64]
    since = now - timedelta(minutes=web.login_window_minutes)

    def failed(*where: Any) -> Any:
        return (
            select(func.count(), func.max(AuditRow.at))
            .select_from(AuditRow)
            .where(AuditRow.action == "login.failed", col(AuditRow.at) >= since, *where)
        )

    wait = (
        "Too many failed sign-in attempts. Wait "
        f"{web.login_window_minutes:g} minutes, or ask an administrator."
    )
    if ip is not None:
        by_ip = int(session.exec(failed(AuditRow.ip == ip)).one()[0])
        if by_ip >= web.login_max_failures_per_ip:
            return wait
    if not name:
        return None
    pair = int(session.exec(failed(AuditRow.actor == name, AuditRow.ip == ip)).one()[0])
    if pair >= web.login_max_failures_per_user:
        return wait
    count, last = session.exec(failed(AuditRow.actor == name)).one()
    over = int(count) - web.login_slowdown_after_failures
    if over < 0 or last is None or _known_address(session, name, ip, now):
        return None
    delay = timedelta(seconds=min(web.login_max_delay_seconds, 2.0**over))
    last_at = last if last.tzinfo is not None else last.replace(tzinfo=now.tzinfo)
    left = last_at + delay - now
    if left > timedelta(0):
        return (
            "This account has had many failed sign-in attempts, so attempts are slowed "
            f"down: try again in {max(1, round(left.total_seconds()))} seconds."
        )
    return None


def _known_address(session: Session, name: str, ip: str | None, now: datetime) -> bool:
    if ip is None:
        return False
    found = session.exec(
        select(AuditRow.id).where(
            AuditRow.action == "login",
            AuditRow.actor == name,
            AuditRow.ip == ip,
            col(AuditRow.at) >= now - timedelta(days=KNOWN_ADDRESS_DAYS),
        )
    ).first()
    return found is not None


# --- dependencies -------------------------------------------------------------------


def page_user(request: Request) -> Principal:
    """The signed-in user of a console page, or a redirect to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    host = host_of(request)
    if token:
        with session_scope(host.engine) as session:
            found = live_session(session, token, host.clock.now(), settings_of(request))
            if found is not None:
                row, user = found
                assert user.id is not None
                return Principal(
                    user.id,
                    user.username,
                    user.role,
                    "web",
                    client_ip(request),
                    row.id,
                    row.csrf_token,
                )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise LoginRequired(target if request.method == "GET" else "/")


PageUser = Annotated[Principal, Depends(page_user)]


def need(role: str) -> Callable[[Principal], Principal]:
    """A dependency: the signed-in user, who must hold at least `role`."""

    def check(principal: PageUser) -> Principal:
        if not principal.can(role):
            raise Forbidden(role)
        return principal

    return check


def token_principal(request: Request, secret: str | None) -> Principal:
    """The user behind a bearer token, or 401 (the API's only way in)."""
    host = host_of(request)
    if secret and secret.strip():
        with session_scope(host.engine) as session:
            user = user_for_token(session, secret.strip(), host.clock.now())
            if user is not None:
                assert user.id is not None
                return Principal(user.id, user.username, user.role, "api", client_ip(request))
    raise HTTPException(
        401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
    )
