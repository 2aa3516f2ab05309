"""A calm demo: back-dated example history does not start as an escalation storm.

`monitor demo` replays each example's story shifted to end now, so its alerts are
raised at back-dated times and, left alone, every one would be due for escalation
(and its first notification due) the second the daemon starts. Here each example
patient keeps only its newest alert group open, re-timed from now; older groups are
acknowledged as "demo history" and their unsent notifications cancelled.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session, col, select

from monitor.routing import Routing
from monitor.services.alerts import acknowledge
from monitor.store.models import AlertRow, DeliveryRow

log = structlog.get_logger(__name__)

HISTORY_BY = "demo (back-dated history)"


def calm_history(session: Session, patient_id: str, now: datetime, routing: Routing) -> int:
    """Acknowledge all but the newest open alert group of one demo patient; returns how
    many groups were quietened."""
    open_alerts = session.exec(
        select(AlertRow)
        .where(AlertRow.patient_id == patient_id, AlertRow.state == "open")
        .order_by(col(AlertRow.raised_at), col(AlertRow.id))
    ).all()
    if not open_alerts:
        return 0
    newest = open_alerts[-1].group_id
    older = sorted({a.group_id for a in open_alerts if a.group_id != newest})
    for group_id in older:
        lead = next(a for a in open_alerts if a.group_id == group_id)
        acknowledge(session, lead.code, HISTORY_BY, now, via="demo")
        for d in session.exec(
            select(DeliveryRow).where(
                DeliveryRow.group_id == group_id, DeliveryRow.state == "pending"
            )
        ):
            d.state = "cancelled"
            d.last_error = "back-dated demo history"
            d.updated_at = now
            session.add(d)
    for a in open_alerts:
        if a.group_id == newest and a.next_escalation_at is not None:
            after = (
                routing.critical_ack_after
                if a.severity == "critical"
                else routing.warning_repeat_after
            )
            a.next_escalation_at = now + after
            session.add(a)
    log.info("demo.calmed", patient_id=patient_id, groups=len(older))
    return len(older)
