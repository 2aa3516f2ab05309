"""The dispatcher: a pipeline of stages that drains what is due.

claim a batch (one UPDATE ... RETURNING; FOR UPDATE SKIP LOCKED on PostgreSQL) ->
send with bounded concurrency per channel, on each notifier's long-lived client ->
settle whatever finished in one transaction -> claim again while batches come back
full. Retries, backoff with jitter, failover to the recipient's next channel and
the delivery-failure alert live here once; notifiers only send and classify.

The claim checks state and lease in its WHERE clause, so two dispatchers never send
the same delivery; a claim whose lease ran out (a process killed mid-send, freed
early by the instance heartbeat) is settled by asking the provider first, then
resent. Silences and quiet hours are applied earlier, when the outbox writes the
delivery (monitor/services/outbox.py); escalation writes new deliveries later.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from monitor.clock import Clock
from monitor.notifiers.base import Notification, Notifier, SendResult
from monitor.routing import Routing
from monitor.services.evaluate import new_code
from monitor.services.latency import VALUE_TO_SEND
from monitor.services.outbox import deliveries_for
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, DeliveryAttemptRow, DeliveryRow

log = structlog.get_logger(__name__)

# Sends at once per channel when `[channels.<name>] max_concurrency` is not set: a
# provider's API rate limit (Twilio queues per sender; a mail relay counts sessions)
# is the real bound, so these stay modest.
DEFAULT_CONCURRENCY: Mapping[str, int] = {
    "console": 64,
    "webhook": 16,
    "twilio_sms": 8,
    "smtp_email": 4,
}
FALLBACK_CONCURRENCY = 4


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
    # `[channels.<name>] max_concurrency`, by channel name
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def lease(self) -> timedelta:
        # a reclaimed send may look up, send and look up again: three timeouts
        return timedelta(seconds=self.routing.send_timeout_s * 3 + 30)

    @property
    def window(self) -> int:
        """Claimed sends in flight at most: two batches, so one is claimed while the
        other is sent."""
        return max(self.routing.batch, 1) * 2

    def concurrency(self, channel: str) -> int:
        if channel in self.limits:
            return max(int(self.limits[channel]), 1)
        notifier = self.notifiers.get(channel)
        kind = str(getattr(notifier, "name", ""))
        return DEFAULT_CONCURRENCY.get(kind, FALLBACK_CONCURRENCY)

    # --- claim ----------------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        return or_(
            and_(col(DeliveryRow.state) == "pending", col(DeliveryRow.next_attempt_at) <= now),
            and_(col(DeliveryRow.state) == "sending", col(DeliveryRow.claimed_until) < now),
        )

    def claim(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Claim up to `limit` due deliveries in one statement, and open an attempt each."""
        limit = limit or self.routing.batch
        due = (
            select(DeliveryRow.id)  # type: ignore[call-overload]
            .where(self._claimable(now))
            .order_by(col(DeliveryRow.next_attempt_at))
            .limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(DeliveryRow)
            .where(col(DeliveryRow.id).in_(due.scalar_subquery()), self._claimable(now))
            .values(
                state="sending",
                claimed_by=self.worker,
                claimed_until=now + self.lease,
                attempts=DeliveryRow.attempts + 1,
                updated_at=now,
                # the right-hand side sees the row before the update
                reclaimed=col(DeliveryRow.state) == "sending",
            )
            .returning(
                col(DeliveryRow.id),
                col(DeliveryRow.reclaimed),
                col(DeliveryRow.channels),
                col(DeliveryRow.channel_index),
                col(DeliveryRow.lead_alert_id),
                col(DeliveryRow.patient_id),
                col(DeliveryRow.severity),
                col(DeliveryRow.subject),
                col(DeliveryRow.text),
                col(DeliveryRow.recipient),
                col(DeliveryRow.body),
                col(DeliveryRow.group_id),
                col(DeliveryRow.purpose),
            )
            .execution_options(synchronize_session=False)
        )
        claimed: list[Claimed] = []
        with session_scope(self.engine) as session:
            rows = sorted(session.execute(stmt).all(), key=lambda r: r.id)
            if not rows:
                return []
            codes: dict[int, str] = dict(
                session.execute(
                    select(AlertRow.id, AlertRow.code).where(  # type: ignore[call-overload]
                        col(AlertRow.id).in_({r.lead_alert_id for r in rows})
                    )
                ).all()
            )
            attempts = []
            for r in rows:
                channel, address = r.channels[r.channel_index]
                attempts.append(
                    DeliveryAttemptRow(
                        delivery_id=r.id,
                        channel=channel,
                        address=address,
                        started_at=now,
                        worker=self.worker,
                    )
                )
            session.add_all(attempts)
            session.flush()
            for r, attempt in zip(rows, attempts, strict=True):
                channel, address = r.channels[r.channel_index]
                claimed.append(
                    Claimed(
                        delivery_id=r.id,
                        attempt_id=attempt.id or 0,
                        reclaimed=bool(r.reclaimed),
                        channel=channel,
                        notification=Notification(
                            delivery_id=r.id,
                            alert_code=codes[r.lead_alert_id],
                            patient_id=r.patient_id or "",
                            severity=r.severity,
                            address=address,
                            subject=r.subject,
                            text=r.text,
                            recipient=r.recipient,
                            details={"body": r.body, "group_id": r.group_id, "purpose": r.purpose},
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
        self.settle_many([(c, result)], now)

    def settle_many(self, outcomes: Sequence[tuple[Claimed, SendResult]], now: datetime) -> bool:
        """Record every outcome in one transaction; True when a failover made a
        delivery due at once (the pipeline then claims again)."""
        if not outcomes:
            return False
        requeued = False
        with session_scope(self.engine) as session:
            ids = [c.delivery_id for c, _ in outcomes]
            rows = {
                r.id: r
                for r in session.exec(sm_select(DeliveryRow).where(col(DeliveryRow.id).in_(ids)))
            }
            tries = {
                a.id: a
                for a in session.exec(
                    sm_select(DeliveryAttemptRow).where(
                        col(DeliveryAttemptRow.id).in_([c.attempt_id for c, _ in outcomes])
                    )
                )
            }
            for c, result in outcomes:
                requeued |= self._settle_one(
                    session, rows[c.delivery_id], tries[c.attempt_id], c, result, now
                )
        return requeued

    def _settle_one(
        self,
        session: Session,
        row: DeliveryRow,
        attempt: DeliveryAttemptRow,
        c: Claimed,
        result: SendResult,
        now: datetime,
    ) -> bool:
        attempt.finished_at = now
        attempt.outcome = result.outcome
        attempt.provider_id = result.provider_id
        attempt.error = result.error
        session.add(attempt)
        if row.state != "sending" or row.claimed_by != self.worker:
            log.warning("delivery.lost_claim", delivery_id=row.id)
            return False
        row.claimed_until = None
        row.reclaimed = False
        row.updated_at = now
        outcome = result.outcome
        requeued = False
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
            if row.purpose == "alert":
                VALUE_TO_SEND.labels(channel=c.channel, severity=row.severity).observe(
                    max((now - row.created_at).total_seconds(), 0.0)
                )
        elif outcome in ("transient", "unknown"):
            delay = backoff(row.attempts, self.routing, self.rand)
            if result.retry_after_s:
                delay = max(delay, timedelta(seconds=result.retry_after_s))
            row.state = "pending"
            row.next_attempt_at = now + delay
            row.last_error = result.error
        else:
            fail_over(session, row, result.error, self.routing, now)
            requeued = True
        session.add(row)
        log.info(
            "delivery.attempt",
            delivery_id=row.id,
            channel=c.channel,
            outcome=result.outcome,
            state=row.state,
            patient_id=row.patient_id,
        )
        return requeued

    # --- the pipeline ---------------------------------------------------------------

    async def run_once(self) -> int:
        """Drain what is due now: claim batches while they come back full, keep at most
        `window` sends in flight (each channel at its own concurrency), and settle what
        finished together. A hung provider holds up only its own channel's slots.
        Database work runs off the loop. Returns how many sends were claimed."""
        batch = max(self.routing.batch, 1)
        gates: dict[str, asyncio.Semaphore] = {}

        async def send(c: Claimed) -> tuple[Claimed, SendResult]:
            gate = gates.get(c.channel)
            if gate is None:
                gate = gates[c.channel] = asyncio.Semaphore(self.concurrency(c.channel))
            async with gate:
                return c, await self._send(c)

        inflight: set[asyncio.Task[tuple[Claimed, SendResult]]] = set()
        total = 0
        more = True
        try:
            while True:
                while more and len(inflight) + batch <= self.window:
                    claimed = await asyncio.to_thread(self.claim, self.clock.now(), batch)
                    total += len(claimed)
                    more = len(claimed) == batch
                    inflight |= {asyncio.ensure_future(send(c)) for c in claimed}
                if not inflight:
                    return total
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                outcomes = [t.result() for t in done]
                if await asyncio.to_thread(self.settle_many, outcomes, self.clock.now()):
                    more = True
        finally:
            # Cancelled (shutdown): unsent claims stay claimed and are retaken after the
            # lease, settled by lookup first.
            for t in inflight:
                t.cancel()


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
