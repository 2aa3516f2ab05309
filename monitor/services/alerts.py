"""What people do with alerts: acknowledge, resolve, annotate, silence; and the log."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session, col, select

from monitor.store.models import (
    AlertRow,
    DeliveryAttemptRow,
    DeliveryRow,
    PatientRow,
    SilenceRow,
)

log = structlog.get_logger(__name__)


class AlertError(LookupError):
    """No such alert, or an action that does not apply to it."""


def by_code(session: Session, code: str) -> AlertRow:
    alert = session.exec(select(AlertRow).where(AlertRow.code == code.strip().upper())).first()
    if alert is None:
        raise AlertError(f"code: no alert {code!r}")
    return alert


def group_of(session: Session, alert: AlertRow) -> list[AlertRow]:
    return list(
        session.exec(
            select(AlertRow).where(AlertRow.group_id == alert.group_id).order_by(col(AlertRow.id))
        )
    )


def acknowledge(
    session: Session, code: str, by: str, now: datetime, via: str = "cli"
) -> list[AlertRow]:
    """Acknowledge the alert and the rest of its notification group; stop escalating it.

    Escalation and reminder deliveries not yet sent are cancelled; the first
    notification still reaches everyone it was meant for.
    """
    if not by.strip():
        raise AlertError("by: say who acknowledges")
    alert = by_code(session, code)
    group = group_of(session, alert)
    changed = []
    for a in group:
        if a.state == "open":
            a.state = "acknowledged"
            a.acknowledged_by = by.strip()
            a.acknowledged_at = now
            changed.append(a)
        a.next_escalation_at = None
        session.add(a)
    _cancel_escalations(session, alert, f"acknowledged by {by.strip()}", now)
    log.info(
        "alert.acknowledged",
        code=alert.code,
        patient_id=alert.patient_id,
        via=via,
        alerts=len(changed),
    )
    return changed


def _cancel_escalations(session: Session, alert: AlertRow, why: str, now: datetime) -> None:
    """Escalation and reminder deliveries not yet sent are not sent: someone owns it."""
    for d in session.exec(
        select(DeliveryRow).where(
            DeliveryRow.group_id == alert.group_id,
            DeliveryRow.state == "pending",
            col(DeliveryRow.purpose).in_(["escalation", "repeat"]),
        )
    ):
        d.state = "cancelled"
        d.last_error = why
        d.updated_at = now
        session.add(d)


def resolve(session: Session, code: str, by: str, note: str, now: datetime) -> AlertRow:
    alert = by_code(session, code)
    _cancel_escalations(session, alert, f"resolved by {by}", now)
    for other in group_of(session, alert):
        other.next_escalation_at = None
        session.add(other)
    if alert.state == "open":
        alert.acknowledged_by = alert.acknowledged_by or by
        alert.acknowledged_at = alert.acknowledged_at or now
    alert.state = "resolved"
    alert.resolved_at = now
    alert.next_escalation_at = None
    alert.note = "\n".join(filter(None, [alert.note, f"{now.isoformat()} {by}: {note}"]))
    session.add(alert)
    return alert


def add_note(session: Session, code: str, by: str, note: str, now: datetime) -> AlertRow:
    alert = by_code(session, code)
    alert.note = "\n".join(filter(None, [alert.note, f"{now.isoformat()} {by}: {note}"]))
    session.add(alert)
    return alert


def silence(
    session: Session, patient_id: str, reason: str, until: datetime, by: str, now: datetime
) -> SilenceRow:
    if session.get(PatientRow, patient_id) is None:
        raise AlertError(f"patient: no enrolled patient {patient_id!r}")
    if not reason.strip():
        raise AlertError("reason: a silence needs a reason")
    if until <= now:
        raise AlertError("until: must be in the future")
    row = SilenceRow(
        patient_id=patient_id,
        reason=reason.strip(),
        created_by=by,
        created_at=now,
        expires_at=until,
    )
    session.add(row)
    session.flush()
    log.info("patient.silenced", patient_id=patient_id, silence=row.id, until=until.isoformat())
    return row


def list_alerts(
    session: Session,
    state: str | None = None,
    patient_id: str | None = None,
    limit: int = 200,
) -> list[AlertRow]:
    stmt = select(AlertRow).order_by(col(AlertRow.id).desc()).limit(limit)
    if state:
        stmt = stmt.where(AlertRow.state == state)
    if patient_id:
        stmt = stmt.where(AlertRow.patient_id == patient_id)
    return list(session.exec(stmt))


def deliveries_of(
    session: Session, alert: AlertRow
) -> list[tuple[DeliveryRow, list[DeliveryAttemptRow]]]:
    out = []
    for d in session.exec(
        select(DeliveryRow)
        .where(DeliveryRow.group_id == alert.group_id)
        .order_by(col(DeliveryRow.id))
    ):
        attempts = list(
            session.exec(
                select(DeliveryAttemptRow)
                .where(DeliveryAttemptRow.delivery_id == d.id)
                .order_by(col(DeliveryAttemptRow.id))
            )
        )
        out.append((d, attempts))
    return out
