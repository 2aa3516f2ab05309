"""Instances are visible: each daemon holds a heartbeat row with a lease.

Every few seconds a daemon renews its own lease (and the claims it holds, so a send
waiting for its channel's turn never looks abandoned) and frees the claims of any
instance, on any host, whose lease lapsed: those deliveries become claimable at
once and are settled by lookup before any resend. A paused process that comes back
after its lease was taken over finds its row gone, registers again, and its
late settles are refused as lost claims.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import col

from monitor.store.db import session_scope
from monitor.store.models import DeliveryRow, InstanceRow

log = structlog.get_logger(__name__)

DEFAULT_LEASE_SECONDS = 15.0


def new_instance_id() -> str:
    """host:pid:random, so a reused pid on a restarted host is a new instance."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Heartbeat:
    engine: Engine
    instance_id: str
    lease: timedelta = timedelta(seconds=DEFAULT_LEASE_SECONDS)
    claim_lease: timedelta = timedelta(seconds=60)

    @property
    def interval_seconds(self) -> float:
        """Three renewals per lease: one late beat is not a lapse."""
        return max(self.lease.total_seconds() / 3, 0.2)

    def register(self, now: datetime) -> None:
        with session_scope(self.engine) as session:
            row = session.get(InstanceRow, self.instance_id)
            if row is None:
                host, _, rest = self.instance_id.partition(":")
                pid = rest.partition(":")[0]
                row = InstanceRow(
                    id=self.instance_id,
                    host=host,
                    pid=int(pid) if pid.isdigit() else os.getpid(),
                    started_at=now,
                    lease_until=now + self.lease,
                )
            row.lease_until = now + self.lease
            session.add(row)

    def beat(self, now: datetime) -> int:
        """Renew this instance and its claims; free lapsed instances' claims (how many)."""
        with session_scope(self.engine) as session:
            renewed = session.execute(
                update(InstanceRow)
                .where(col(InstanceRow.id) == self.instance_id)
                .values(lease_until=now + self.lease)
            )
            assert isinstance(renewed, CursorResult)
            if renewed.rowcount != 1:
                log.warning("instance.lease_lost", instance=self.instance_id)
        if renewed.rowcount != 1:
            self.register(now)
        with session_scope(self.engine) as session:
            session.execute(
                update(DeliveryRow)
                .where(
                    col(DeliveryRow.state) == "sending",
                    col(DeliveryRow.claimed_by) == self.instance_id,
                )
                .values(claimed_until=now + self.claim_lease)
                .execution_options(synchronize_session=False)
            )
        return free_lapsed(self.engine, now)

    def retire(self) -> None:
        """A clean stop: the row goes; nothing is claimed by then (sends finished)."""
        with session_scope(self.engine) as session:
            session.execute(delete(InstanceRow).where(col(InstanceRow.id) == self.instance_id))


def free_lapsed(engine: Engine, now: datetime) -> int:
    """Make the claims of instances whose lease lapsed claimable now; drop their rows.

    Both statements re-check the lease, so an instance that renewed in between keeps
    its row; two survivors doing this at once do the same harmless thing twice.
    """
    lapsed = select(col(InstanceRow.id)).where(col(InstanceRow.lease_until) < now)
    with session_scope(engine) as session:
        names = list(session.execute(lapsed).scalars())
        if not names:
            return 0
        freed = session.execute(
            update(DeliveryRow)
            .where(
                col(DeliveryRow.state) == "sending",
                col(DeliveryRow.claimed_by).in_(lapsed.scalar_subquery()),
            )
            .values(claimed_until=now - timedelta(seconds=1))
            .execution_options(synchronize_session=False)
        )
        assert isinstance(freed, CursorResult)
        session.execute(
            delete(InstanceRow)
            .where(col(InstanceRow.id).in_(names), col(InstanceRow.lease_until) < now)
            .execution_options(synchronize_session=False)
        )
    log.warning("instance.lapsed", instances=names, freed=freed.rowcount)
    return int(freed.rowcount)


def live_instances(engine: Engine, now: datetime) -> list[InstanceRow]:
    """For health pages and metrics: who is running, by lease."""
    from sqlmodel import select as sm_select

    with session_scope(engine) as session:
        return list(
            session.exec(
                sm_select(InstanceRow)
                .where(col(InstanceRow.lease_until) >= now)
                .order_by(col(InstanceRow.started_at))
            )
        )
