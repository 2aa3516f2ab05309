"""The dispatcher: claims due deliveries, sends them, settles each outcome.

Retries, backoff with jitter, failover to the recipient's next channel and the
delivery-failure alert live here once; notifiers only send and classify. A claim
is a conditional UPDATE (state and lease checked in the WHERE clause), so two
dispatchers never send the same delivery; a claim whose lease ran out (a process
killed mid-send) is settled by asking the provider first, then resent.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, update
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session, col, select

from monitor.clock import Clock
from monitor.notifiers.base import Notification, Notifier, SendResult
from monitor.routing import Routing
from monitor.services.evaluate import new_code
from monitor.services.outbox import deliveries_for
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, DeliveryAttemptRow, DeliveryRow

log = structlog.get_logger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff(attempts: int, routing: Routing, rand: Callable[[], float]) -> timedelta:
    """Exponential backoff with jitter (between half and all of the step)."""
    step: timedelta = min(routing.retry_max, routing.retry_base * (2 ** max(attempts - 1, 0)))
    return step * float(0.5 + rand() / 2)


@dataclass
class Claimed:
    delivery_id: int
    attempt_id: int
    reclaimed: bool
    notification: Notification
    channel: str


@dataclass
class Dispatcher:
    engine: Engine
    routing: Routing
    notifiers: Mapping[str, Notifier]
    clock: Clock
    worker: str = field(default_factory=worker_id)
    rand: Callable[[], float] = random.random

    @property
    def lease(self) -> timedelta:
        # a reclaimed send may look up, send and look up again: three timeouts
        return timedelta(seconds=self.routing.send_timeout_s * 3 + 30)

    # --- claim ----------------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        return or_(
            and_(col(DeliveryRow.state) == "pending", col(DeliveryRow.next_attempt_at) <= now),
            and_(col(DeliveryRow.state) == "sending", col(DeliveryRow.claimed_until) < now),
        )

    def claim(self, now: datetime) -> list[Claimed]:
        claimed: list[Claimed] = []
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(DeliveryRow)
                .where(self._claimable(now))
                .order_by(col(DeliveryRow.next_attempt_at))
                .limit(self.routing.batch)
            ).all()
            for row in rows:
                reclaimed = row.state == "sending"
                result = session.execute(
                    update(DeliveryRow)
                    .where(col(DeliveryRow.id) == row.id, self._claimable(now))
                    .values(
                        state="sending",
                        claimed_by=self.worker,
                        claimed_until=now + self.lease,
                        attempts=DeliveryRow.attempts + 1,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                assert isinstance(result, CursorResult)
                if result.rowcount != 1:
                    continue
                channel, address = row.channels[row.channel_index]
                attempt = DeliveryAttemptRow(
                    delivery_id=row.id or 0,
                    channel=channel,
                    address=address,
                    started_at=now,
                    worker=self.worker,
                )
                session.add(attempt)
                session.flush()
                lead = session.get(AlertRow, row.lead_alert_id)
                assert lead is not None
                claimed.append(
                    Claimed(
                        delivery_id=row.id or 0,
                        attempt_id=attempt.id or 0,
                        reclaimed=reclaimed,
                        channel=channel,
                        notification=Notification(
                            delivery_id=row.id or 0,
                            alert_code=lead.code,
                            patient_id=row.patient_id or "",
                            severity=row.severity,
                            address=address,
                            subject=row.subject,
                            text=row.text,
                            recipient=row.recipient,
                            details={
                                "body": row.body,
                                "group_id": row.group_id,
                                "purpose": row.purpose,
                            },
                        ),
                    )
                )
        return claimed

    # --- send -----------------------------------------------------------------------

    async def _send(self, c: Claimed) -> SendResult:
        notifier = self.notifiers.get(c.channel)
        if notifier is None:
            return SendResult("permanent", error=f"channel {c.channel!r} is not configured")
        if c.reclaimed:
            settled = await self._lookup(notifier, c)
            if settled is not None and settled.outcome == "delivered":
                log.info("delivery.settled_after_restart", delivery_id=c.delivery_id)
                return settled
        try:
            result = await asyncio.wait_for(
                notifier.send(c.notification), timeout=self.routing.send_timeout_s
            )
        except TimeoutError:
            result = SendResult("unknown", error="no answer within the send timeout")
        except Exception as exc:  # a notifier bug must not stop the dispatcher
            log.exception("delivery.notifier_error", delivery_id=c.delivery_id)
            result = SendResult("transient", error=f"notifier error: {exc!r}")
        if result.outcome == "unknown":
            looked = await self._lookup(notifier, c)
            if looked is not None:
                return (
                    looked
                    if looked.outcome == "delivered"
                    else SendResult(
                        "transient", error=f"{result.error}; not found at provider, resending"
                    )
                )
        return result

    async def _lookup(self, notifier: Notifier, c: Claimed) -> SendResult | None:
        try:
            return await asyncio.wait_for(
                notifier.lookup(c.notification), timeout=self.routing.send_timeout_s
            )
        except Exception:
            log.warning("delivery.lookup_failed", delivery_id=c.delivery_id, exc_info=True)
            return None

    # --- settle ---------------------------------------------------------------------

    def settle(self, c: Claimed, result: SendResult, now: datetime) -> None:
        with session_scope(self.engine) as session:
            row = session.get(DeliveryRow, c.delivery_id)
            attempt = session.get(DeliveryAttemptRow, c.attempt_id)
            assert row is not None and attempt is not None
            attempt.finished_at = now
            attempt.outcome = result.outcome
            attempt.provider_id = result.provider_id
            attempt.error = result.error
            session.add(attempt)
            if row.state != "sending" or row.claimed_by != self.worker:
                log.warning("delivery.lost_claim", delivery_id=row.id)
                return
            row.claimed_until = None
            row.updated_at = now
            outcome = result.outcome
            if outcome in ("transient", "unknown") and row.attempts >= self.routing.max_attempts:
                outcome = "permanent"
                result = SendResult(
                    "permanent", error=f"gave up after {row.attempts} attempts: {result.error}"
                )
            if outcome == "delivered":
                notifier = self.notifiers.get(c.channel)
                row.state = "sent" if getattr(notifier, "receipts", False) else "delivered"
                row.provider_id = result.provider_id
                row.last_error = None
            elif outcome in ("transient", "unknown"):
                delay = backoff(row.attempts, self.routing, self.rand)
                if result.retry_after_s:
                    delay = max(delay, timedelta(seconds=result.retry_after_s))
                row.state = "pending"
                row.next_attempt_at = now + delay
                row.last_error = result.error
            else:
                fail_over(session, row, result.error, self.routing, now)
            session.add(row)
            log.info(
                "delivery.attempt",
                delivery_id=row.id,
                channel=c.channel,
                outcome=result.outcome,
                state=row.state,
                patient_id=row.patient_id,
            )

    # --- one pass -------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim everything due and send concurrently; each send is settled as soon as it
        ends (a hung provider holds up nobody else). Database work runs off the loop."""
        claimed = await asyncio.to_thread(self.claim, self.clock.now())
        if not claimed:
            return 0

        async def send_and_settle(c: Claimed) -> None:
            result = await self._send(c)
            await asyncio.to_thread(self.settle, c, result, self.clock.now())

        await asyncio.gather(*(send_and_settle(c) for c in claimed))
        return len(claimed)


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
    """Make claims of dead processes on this host claimable now instead of after the lease."""
    host = socket.gethostname()
    freed = 0
    with session_scope(engine) as session:
        for row in session.exec(select(DeliveryRow).where(DeliveryRow.state == "sending")):
            owner = row.claimed_by or ""
            owner_host, _, pid = owner.rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
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
