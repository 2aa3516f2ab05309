"""The append-only audit log: every view of a patient and every action, with who,
what, when and from where.

A row is written in the same transaction as the action it records, so an action
without its audit row (or the reverse) cannot be committed. Rows name patients by
id only. `monitor audit` and the login rate limit read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from monitor.store.accounts import AuditRow


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where: a signed-in user, a token, or a CLI operator."""

    name: str
    role: str | None
    via: str  # web | api | cli
    ip: str | None


def record(
    session: Session,
    actor: Actor,
    action: str,
    now: datetime,
    patient_id: str | None = None,
    alert_code: str | None = None,
    **detail: Any,
) -> AuditRow:
    row = AuditRow(
        at=now,
        actor=actor.name,
        role=actor.role,
        action=action,
        via=actor.via,
        ip=actor.ip,
        patient_id=patient_id,
        alert_code=alert_code,
        detail={k: v for k, v in detail.items() if v is not None},
    )
    session.add(row)
    return row


def query(
    session: Session,
    user: str | None = None,
    patient_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[AuditRow]:
    """Newest first."""
    stmt = select(AuditRow).order_by(col(AuditRow.id).desc()).limit(limit)
    if user:
        stmt = stmt.where(AuditRow.actor == user)
    if patient_id:
        stmt = stmt.where(AuditRow.patient_id == patient_id)
    if action:
        stmt = stmt.where(col(AuditRow.action).startswith(action))
    if since:
        stmt = stmt.where(col(AuditRow.at) >= since)
    return list(session.exec(stmt))


def failures_since(
    session: Session, since: datetime, username: str | None, ip: str | None
) -> tuple[int, int]:
    """Failed logins since `since`: (for this username, from this address)."""

    def count(*where: Any) -> int:
        return int(
            session.exec(
                select(func.count())
                .select_from(AuditRow)
                .where(AuditRow.action == "login.failed", col(AuditRow.at) >= since, or_(*where))
            ).one()
        )

    by_user = count(AuditRow.actor == username) if username else 0
    by_ip = count(AuditRow.ip == ip) if ip else 0
    return by_user, by_ip


def as_json(row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "via": row.via,
        "ip": row.ip,
        "patient": row.patient_id,
        "alert": row.alert_code,
        "detail": row.detail,
    }
