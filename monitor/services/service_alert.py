"""Alerts about the service itself (a silent feed, a delivery gap, the daily summary).

They have no patient. Each is raised once per (rule, key): the key names the trouble
(the source and the time it was last heard from, the stuck delivery), so a restart,
a second instance or the next run of the same check never raises it twice, while
the next silence or the next gap is a new alert. They go out through the outbox like
any alert: the first route matching the rule (the production example routes
`system.*` to the coordinators, then on-call) gives the chain; with no matching
route, `[escalation] delivery_failure_group` (the operators) is told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlmodel import Session, select

from monitor.routing import Routing
from monitor.store.models import AlertRow

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServiceAlert:
    rule: str
    severity: str
    key: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def already_raised(session: Session, rule: str, key: str) -> bool:
    return (
        session.exec(select(AlertRow.id).where(AlertRow.rule == rule, AlertRow.key == key)).first()
        is not None
    )


def raise_service_alerts(
    session: Session,
    found: Sequence[ServiceAlert],
    routing: Routing | None,
    now: datetime,
    group_prefix: str = "svc",
) -> list[AlertRow]:
    """Store those of `found` not raised before, as one notification; return them."""
    from monitor.services.codes import new_code
    from monitor.services.outbox import enqueue

    new = [f for f in found if not already_raised(session, f.rule, f.key)]
    if not new:
        return []
    group_id = f"{group_prefix}-{new_code(session)}"
    rows: list[AlertRow] = []
    for f in new:
        row = AlertRow(
            code=new_code(session),
            patient_id=None,
            rule=f.rule,
            severity=f.severity,
            key=f.key,
            at=now,
            raised_at=now,
            message=f.message,
            details=f.details,
            profile="-",
            group_id=group_id,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    enqueue(session, rows, routing, now)
    for row in rows:
        log.warning("service_alert.raised", rule=row.rule, code=row.code, key=row.key)
    return rows
