"""Escalation: unacknowledged critical alerts climb their frozen chain; warnings repeat.

Works on the lead alert of each notification group, through an indexed
`next_escalation_at`, so a check costs in proportion to what is due.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import update
from sqlalchemy.engine import CursorResult
from sqlmodel import Session, col, select

from monitor.routing import Routing
from monitor.services.alerts import group_of
from monitor.services.outbox import active_silence, deliveries_for
from monitor.store.models import AlertRow

log = structlog.get_logger(__name__)


def _claim(session: Session, lead: AlertRow, now: datetime, routing: Routing) -> bool:
    """Move the alert to its next step with a conditional UPDATE: of several instances
    sweeping at once, exactly one sends the step."""
    chain = list(lead.chain) or [routing.failure_group]
    critical = lead.severity == "critical"
    step = min(lead.escalation_step + 1, len(chain) - 1) if critical else lead.escalation_step
    after = routing.critical_ack_after if critical else routing.warning_repeat_after
    result = session.execute(
        update(AlertRow)
        .where(
            col(AlertRow.id) == lead.id,
            col(AlertRow.state) == "open",
            col(AlertRow.next_escalation_at) == lead.next_escalation_at,
        )
        .values(escalation_step=step, next_escalation_at=now + after)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        return False
    session.refresh(lead)
    return True


def escalate_due(session: Session, routing: Routing, now: datetime) -> int:
    """Send the next escalation step or reminder of every due, open alert group."""
    due = session.exec(
        select(AlertRow)
        .where(
            AlertRow.state == "open",
            col(AlertRow.next_escalation_at).is_not(None),
            col(AlertRow.next_escalation_at) <= now,
        )
        .order_by(col(AlertRow.next_escalation_at))
        .limit(500)
    ).all()
    sent = 0
    for lead in due:
        if not _claim(session, lead, now, routing):
            continue  # another instance took this step
        group = [a for a in group_of(session, lead) if a.state == "open"]
        chain = list(lead.chain) or [routing.failure_group]
        if lead.severity == "critical":
            step = lead.escalation_step
            waited = int((now - lead.raised_at).total_seconds() // 60)
            note = f"Unacknowledged for {waited} min; escalated to step {step + 1} of {len(chain)}."
            deliveries_for(session, group, chain[step], routing, now, "escalation", step, note)
        elif active_silence(session, lead.patient_id, now) is None:
            deliveries_for(
                session, group, chain[0], routing, now, "repeat", 0, "Still unacknowledged."
            )
        sent += 1
        log.info(
            "alert.escalated",
            code=lead.code,
            patient_id=lead.patient_id,
            step=lead.escalation_step,
            severity=lead.severity,
        )
    return sent
