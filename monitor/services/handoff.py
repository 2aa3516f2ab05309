"""A batch's first sends, claimed by the group writer and handed to the dispatcher.

Before, a stop value's alert was committed by the writer, and then the dispatcher,
woken, claimed its delivery in a write transaction of its own (~1.3 ms, a thread hop,
and a turn on SQLite's write lock that the writer's next batch waited behind). Here
the writer's batch claims the deliveries it has just written, in its own transaction
and so with the same guarantees as any claim (state, lease and attempt committed
before anything is sent; a process killed before the send leaves a claim whose lease
lapses and which a survivor settles by lookup), and after the commit hands them to
the dispatcher in memory. Bounded by the dispatcher's window: what does not fit is
left pending for the dispatcher's own claims, critical sends claimed first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlmodel import Session

from monitor.services.dispatch import Claimed, Dispatcher
from monitor.store.models import AlertRow

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Carried:
    """What a committed batch leaves for the dispatcher."""

    claims: list[Claimed] = field(default_factory=list)
    # new alerts whose sends may still be pending: the dispatcher must claim them
    more: bool = False


def claim_written(
    session: Session,
    dispatcher: Dispatcher,
    alerts: Sequence[AlertRow],
    now: datetime,
    ready: bool,
) -> Carried:
    """Claim the due deliveries of `alerts` (just written, in `session`'s transaction)
    when a running dispatcher will take them (`ready`), within its window. A failed
    claim leaves them pending (its savepoint rolled back): the batch still commits."""
    if not alerts:
        return Carried()
    limit = dispatcher.room
    if not ready or limit <= 0:
        return Carried(more=True)
    savepoint = session.begin_nested()
    try:
        claims = dispatcher.claim_new(session, {a.id: a.code for a in alerts if a.id}, now, limit)
        savepoint.commit()
    except Exception:
        savepoint.rollback()
        log.exception("dispatch.handoff_failed", alerts=len(alerts))
        return Carried(more=True)
    return Carried(claims, more=len(claims) >= limit)
