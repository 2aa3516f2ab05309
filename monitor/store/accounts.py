"""SQLModel tables of the console's accounts: users, web sessions, API tokens, audit log.

Secrets are never stored: passwords as argon2 hashes, session cookies and API
tokens as SHA-256 digests (they are long random strings, so a fast digest is
enough and lets us look them up). The audit log is append-only: the ORM refuses
to update or delete its rows, and the migration adds database triggers that do
the same for anyone writing SQL by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, SQLModel

from monitor.store.types import UTCDateTime

ROLES: tuple[str, ...] = ("coordinator", "clinician", "admin")


def _dt(index: bool = False, nullable: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


class UserRow(SQLModel, table=True):
    """A person who may sign in to the console; `role` is one of ROLES."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=16)
    password_hash: str
    disabled: bool = False
    created_at: datetime = _dt()
    password_changed_at: datetime = _dt()
    disabled_at: datetime | None = _dt(nullable=True)
    # Care teams this account is limited to (monitor/web/scope.py); empty: every team.
    teams: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )


class WebSessionRow(SQLModel, table=True):
    """A signed-in browser. `id` is the SHA-256 of the cookie; the cookie itself is not kept.

    A session ends when it has been idle too long, when `expires_at` (absolute) is
    reached, at logout, or when its user is disabled or changes password.
    """

    __tablename__ = "web_sessions"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _dt()
    last_seen_at: datetime = _dt()
    expires_at: datetime = _dt()
    ended_at: datetime | None = _dt(nullable=True)
    ip: str | None = Field(default=None, max_length=64)
    flash: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ApiTokenRow(SQLModel, table=True):
    """A bearer token for an integration, acting as its user (and that user's role)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    created_at: datetime = _dt()
    last_used_at: datetime | None = _dt(nullable=True)
    revoked_at: datetime | None = _dt(nullable=True)


class AuditRow(SQLModel, table=True):
    """Who did or saw what, when, from where. Written once, never changed.

    `actor` is a username (or the operating-system user for the CLI); patients are
    named by id only, never by display name.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_action_at", "action", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _dt(index=True)
    actor: str = Field(max_length=200, index=True)
    role: str | None = Field(default=None, max_length=16)
    action: str = Field(max_length=64)
    via: str = Field(max_length=8)
    ip: str | None = Field(default=None, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64, index=True)
    alert_code: str | None = Field(default=None, max_length=16)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AppendOnlyError(RuntimeError):
    """Someone tried to change or delete an audit row."""


@event.listens_for(OrmSession, "before_flush")
def _audit_is_append_only(session: OrmSession, _ctx: Any, _instances: Any) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AuditRow) and (obj in session.deleted or session.is_modified(obj)):
            raise AppendOnlyError("the audit log is append-only")
