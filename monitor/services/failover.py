"""When a send fails for good, or the process sending it died.

A permanent failure moves the delivery to the recipient's next contact (or marks it
failed) and tells the coordinators by a `delivery.failed` alert of its own (never
about their own notices). Claims of a dead process on this host are made claimable
at start instead of after their lease; the instance heartbeat frees those of other
hosts (services/instances.py).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session
from sqlmodel import select as sm_select

from monitor.routing import Routing
from monitor.services.codes import new_code
from monitor.services.outbox import deliveries_for
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, DeliveryRow

log = structlog.get_logger(__name__)


def delivery_failure_alert(
    session: Session, row: DeliveryRow, error: str | None, routing: Routing, now: datetime
) -> None:
    """Tell the coordinators a channel failed for good (never about their own notices)."""
    if row.purpose == "delivery_failure":
        log.error("delivery.failure_notice_failed", delivery_id=row.id, error=error)
        return
    lead = session.get(AlertRow, row.lead_alert_id)
    assert lead is not None
    failed_index = row.channel_index if row.state == "failed" else row.channel_index - 1
    channel = row.channels[failed_index][0]
    still = (
        "no channel left"
        if row.state == "failed"
        else f"trying {row.channels[row.channel_index][0]} next"
    )
    alert = AlertRow(
        code=new_code(session),
        patient_id=lead.patient_id,
        rule="delivery.failed",
        severity="warning",
        key=f"delivery:{row.id}:{failed_index}",
        at=now,
        raised_at=now,
        message=(
            f"Could not deliver alert {lead.code} ({lead.rule}) to {row.recipient} by "
            f"{channel}: {error}; {still}. Check the contact details."
        ),
        details={"delivery_id": row.id, "error": error},
        profile=lead.profile,
        group_id=f"df-{row.id}-{failed_index}",
        chain=[routing.failure_group],
        route="delivery_failure",
    )
    session.add(alert)
    session.flush()
    deliveries_for(session, [alert], routing.failure_group, routing, now, "delivery_failure", 0)


def fail_over(
    session: Session, row: DeliveryRow, error: str | None, routing: Routing, now: datetime
) -> None:
    """A permanent failure: the recipient's next contact, or failed; coordinators told."""
    row.last_error = error
    if row.channel_index + 1 < len(row.channels):
        row.channel_index += 1
        row.state = "pending"
        row.next_attempt_at = now
        log.warning("delivery.failover", delivery_id=row.id, to=row.channels[row.channel_index][0])
    else:
        row.state = "failed"
    row.updated_at = now
    session.add(row)
    delivery_failure_alert(session, row, error, routing, now)


def recover_orphans(engine: Engine, now: datetime) -> int:
    """Make claims of dead processes on this host claimable now instead of after the lease.

    Claims are named `host:pid` (older) or `host:pid:token` (an instance id)."""
    host = socket.gethostname()
    freed = 0
    with session_scope(engine) as session:
        for row in session.exec(sm_select(DeliveryRow).where(DeliveryRow.state == "sending")):
            parts = (row.claimed_by or "").split(":")
            owner_host, pid = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            if owner_host != host[:80] and owner_host != host:
                continue
            if not pid.isdigit() or _alive(int(pid)):
                continue
            row.claimed_until = now - timedelta(seconds=1)
            session.add(row)
            freed += 1
    return freed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
