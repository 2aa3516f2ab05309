"""Escalation: unacknowledged critical alerts climb their frozen chain; warnings repeat.

Works on the lead alert of each notification group, through an indexed
`next_escalation_at`, so a check costs in proportion to what is due.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session, col, select

from monitor.routing import Routing
from monitor.services.alerts import group_of
from monitor.services.outbox import active_silence, deliveries_for
from monitor.store.models import AlertRow

log = structlog.get_logger(__name__)


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
        group = [a for a in group_of(session, lead) if a.state == "open"]
        chain = list(lead.chain) or [routing.failure_group]
        if lead.severity == "critical":
            step = min(lead.escalation_step + 1, len(chain) - 1)
            waited = int((now - lead.raised_at).total_seconds() // 60)
            note = f"Unacknowledged for {waited} min; escalated to step {step + 1} of {len(chain)}."
            deliveries_for(session, group, chain[step], routing, now, "escalation", step, note)
            lead.escalation_step = step
            lead.next_escalation_at = now + routing.critical_ack_after
        else:
            if active_silence(session, lead.patient_id, now) is None:
                deliveries_for(
                    session, group, chain[0], routing, now, "repeat", 0, "Still unacknowledged."
                )
            lead.next_escalation_at = now + routing.warning_repeat_after
        session.add(lead)
        sent += 1
        log.info(
            "alert.escalated",
            code=lead.code,
            patient_id=lead.patient_id,
            step=lead.escalation_step,
            severity=lead.severity,
        )
    return sent
