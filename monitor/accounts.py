"""Console accounts: users and their roles, passwords, API tokens.

One module so the CLI (`monitor users ...`) and the web console's admin page make
the same checks. Passwords are hashed with argon2id (argon2-cffi); API tokens are
random and kept only as a SHA-256 digest, shown once when created. Disabling a
user or changing a password ends their web sessions at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, col, select

from monitor.store.accounts import ROLES, ApiTokenRow, UserRow, WebSessionRow

log = structlog.get_logger(__name__)

MIN_PASSWORD = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
TOKEN_PREFIX = "lmk_"

# What each role may do; a role can do everything the roles before it can.
RANK = {role: i for i, role in enumerate(ROLES)}

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; the message says why."""


def at_least(role: str, needed: str) -> bool:
    return RANK.get(role, -1) >= RANK[needed]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise AccountError("password: no leading or trailing spaces")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role: {role!r} is not one of {', '.join(ROLES)}")


def get_user(session: Session, username: str) -> UserRow:
    user = session.exec(select(UserRow).where(UserRow.username == username.strip().lower())).first()
    if user is None:
        raise AccountError(f"user: no user {username!r}")
    return user


def add_user(session: Session, username: str, role: str, password: str, now: datetime) -> UserRow:
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise AccountError(
            "username: 2-64 characters of a-z, 0-9 and . _ @ -, starting with a letter or digit"
        )
    _check_role(role)
    _check_password(password)
    if session.exec(select(UserRow.id).where(UserRow.username == name)).first() is not None:
        raise AccountError(f"username: {name!r} already exists")
    user = UserRow(
        username=name,
        role=role,
        password_hash=_hasher.hash(password),
        created_at=now,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    log.info("user.added", user=name, role=role)
    return user


def end_sessions(session: Session, user_id: int, now: datetime) -> int:
    rows = session.exec(
        select(WebSessionRow).where(
            WebSessionRow.user_id == user_id, col(WebSessionRow.ended_at).is_(None)
        )
    ).all()
    for row in rows:
        row.ended_at = now
        session.add(row)
    return len(rows)


def set_password(session: Session, username: str, password: str, now: datetime) -> UserRow:
    user = get_user(session, username)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    user.password_changed_at = now
    session.add(user)
    assert user.id is not None
    end_sessions(session, user.id, now)
    log.info("user.password_changed", user=user.username)
    return user


def set_role(session: Session, username: str, role: str) -> UserRow:
    _check_role(role)
    user = get_user(session, username)
    user.role = role
    session.add(user)
    return user


def set_teams(session: Session, username: str, teams: list[str], known: set[str]) -> UserRow:
    """Limit a user to these care teams (monitor/web/scope.py); [] lifts the limit.
    An admin is never limited: administering is not a clinical view."""
    unknown = [t for t in teams if t not in known]
    if unknown:
        raise AccountError(
            f"teams: unknown team {unknown[0]!r} (known: {', '.join(sorted(known)) or 'none'})"
        )
    user = get_user(session, username)
    if teams and user.role == "admin":
        raise AccountError("teams: an admin sees every team; give the limit to a clinician")
    user.teams = sorted(set(teams))
    session.add(user)
    return user


def set_disabled(session: Session, username: str, disabled: bool, now: datetime) -> UserRow:
    """Disable (ending sessions and revoking tokens) or enable a user."""
    user = get_user(session, username)
    assert user.id is not None
    user.disabled = disabled
    user.disabled_at = now if disabled else None
    session.add(user)
    if disabled:
        end_sessions(session, user.id, now)
        for token in session.exec(
            select(ApiTokenRow).where(
                ApiTokenRow.user_id == user.id, col(ApiTokenRow.revoked_at).is_(None)
            )
        ):
            token.revoked_at = now
            session.add(token)
    log.info("user.disabled" if disabled else "user.enabled", user=user.username)
    return user


def authenticate(session: Session, username: str, password: str) -> UserRow | None:
    """The enabled user with this password, or None; never says which part was wrong."""
    user = session.exec(select(UserRow).where(UserRow.username == username.strip().lower())).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.add(user)
    return user


def list_users(session: Session) -> list[UserRow]:
    return list(session.exec(select(UserRow).order_by(col(UserRow.username))))


@dataclass(frozen=True)
class NewToken:
    row: ApiTokenRow
    secret: str


def create_token(session: Session, username: str, name: str, now: datetime) -> NewToken:
    """A new bearer token for `username`; the secret is returned once and not kept."""
    user = get_user(session, username)
    if user.disabled:
        raise AccountError(f"user: {user.username!r} is disabled")
    if not name.strip():
        raise AccountError("name: say what the token is for")
    assert user.id is not None
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiTokenRow(
        user_id=user.id,
        name=name.strip()[:100],
        token_hash=digest(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        created_at=now,
    )
    session.add(row)
    session.flush()
    log.info("token.created", user=user.username, token_id=row.id)
    return NewToken(row, secret)


def revoke_token(session: Session, token_id: int, now: datetime) -> ApiTokenRow:
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise AccountError(f"token: no token {token_id}")
    row.revoked_at = row.revoked_at or now
    session.add(row)
    return row


def tokens_of(session: Session) -> list[tuple[ApiTokenRow, UserRow]]:
    stmt = (
        select(ApiTokenRow, UserRow)
        .where(ApiTokenRow.user_id == UserRow.id)
        .order_by(col(ApiTokenRow.id))
    )
    return [(t, u) for t, u in session.exec(stmt)]


def user_for_token(session: Session, secret: str, now: datetime) -> UserRow | None:
    """The enabled user behind a live bearer token, or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    row = session.exec(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        return None
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
        session.add(row)
    return user
