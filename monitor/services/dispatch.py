"""The dispatcher: a pipeline of stages that drains what is due.

claim a batch (one UPDATE ... RETURNING; FOR UPDATE SKIP LOCKED on PostgreSQL) ->
send with bounded concurrency per channel, on each notifier's long-lived client ->
settle whatever finished in one transaction -> claim again while batches come back
full. Retries and backoff with jitter live here once, failover to the recipient's
next channel and the delivery-failure alert in services/failover.py; notifiers only
send and classify.

The claim checks state and lease in its WHERE clause, so two dispatchers never send
the same delivery; a claim whose lease ran out (a process killed mid-send, freed
early by the instance heartbeat) is settled by asking the provider first, then
resent. Silences and quiet hours are applied earlier, when the outbox writes the
delivery (monitor/services/outbox.py); escalation writes new deliveries later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, or_, select, union_all, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.orm import Session

from monitor.clock import Clock
from monitor.notifiers.base import Notification, Notifier, SendResult
from monitor.routing import Routing
from monitor.services.failover import fail_over
from monitor.services.latency import VALUE_TO_SEND
from monitor.store.db import session_scope
from monitor.store.driver import bind_time, executemany, insert_returning
from monitor.store.models import DeliveryRow
from monitor.store.tables import ALERTS, DELIVERIES
from monitor.store.types import UTCDateTime

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


# --- the hot statements, built once (building one costs more than running it) --------

_D = DELIVERIES.c
_NOW = bindparam("now", type_=UTCDateTime())


def _claimable() -> Any:
    return or_(
        and_(_D.state == "pending", _D.next_attempt_at <= _NOW),
        and_(_D.state == "sending", _D.claimed_until < _NOW),
    )


def _due_sqlite() -> Any:
    """The oldest `limit` claimable ids, read in index order: each state's range of
    `ix_deliveries_state_next` up to `limit` rows, then the two merged. The single
    OR query sorted every pending delivery on each claim (1.9 ms at 20,000 pending,
    growing with the backlog; this one 0.09 ms)."""
    limit: Any = bindparam("limit")
    parts = [
        select(_D.id, _D.next_attempt_at)
        .where(*where)
        .order_by(_D.next_attempt_at)
        .limit(limit)
        .subquery()
        for where in (
            (_D.state == "pending", _D.next_attempt_at <= _NOW),
            (_D.state == "sending", _D.claimed_until < _NOW),
        )
    ]
    both = union_all(*(select(p.c.id, p.c.next_attempt_at) for p in parts)).subquery()
    return select(both.c.id).order_by(both.c.next_attempt_at).limit(limit)


def _claim_statement(postgres: bool) -> Any:
    if postgres:  # FOR UPDATE cannot lock through a UNION
        due = (
            select(_D.id)
            .where(_claimable())
            .order_by(_D.next_attempt_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
    else:
        due = _due_sqlite()
    return _claiming(due, _claimable())


def _claiming(due: Any, still: Any) -> Any:
    """Claim the rows `due` selects that are `still` claimable; what to send back."""
    return (
        update(DELIVERIES)
        .where(_D.id.in_(due.scalar_subquery()), still)
        .values(
            state="sending",
            claimed_by=bindparam("worker"),
            claimed_until=bindparam("until", type_=UTCDateTime()),
            attempts=_D.attempts + 1,
            updated_at=_NOW,
            # the right-hand side sees the row before the update
            reclaimed=_D.state == "sending",
        )
        .returning(
            _D.id,
            _D.reclaimed,
            _D.channels,
            _D.channel_index,
            _D.lead_alert_id,
            _D.patient_id,
            _D.severity,
            _D.subject,
            _D.text,
            _D.recipient,
            _D.body,
            _D.group_id,
            _D.purpose,
        )
    )


CLAIM = {False: _claim_statement(False), True: _claim_statement(True)}
# The writer's claim of the deliveries it has just written (uncommitted, so no other
# instance can see them yet: no lock to skip): due now, critical first.
_PENDING = (_D.state == "pending", _D.next_attempt_at <= _NOW)
CLAIM_NEW = _claiming(
    select(_D.id)
    .where(_D.lead_alert_id.in_(bindparam("alerts", expanding=True)), *_PENDING)
    .order_by((_D.severity == "critical").desc(), _D.id)
    .limit(bindparam("limit")),
    and_(*_PENDING),
)
ALERT_CODES = select(ALERTS.c.id, ALERTS.c.code).where(
    ALERTS.c.id.in_(bindparam("ids", expanding=True))
)
# Unordered RETURNING, matched back by delivery (one attempt each per claim): asking
# for the parameters' order made SQLite run one INSERT per row (200 a claim, ~57 us
# an alert); unordered, the batch is one statement. The attempt and settle writes go
# to the cursor with ready-made values (monitor/store/driver.py says why).
OPEN_ATTEMPTS = "delivery_attempts (delivery_id, channel, address, started_at, worker)"
# The claims this worker still holds among those being settled (locked on PostgreSQL
# so nobody frees them between this read and the writes below).
_HELD = select(_D.id, _D.attempts, _D.purpose, _D.severity, _D.created_at).where(
    _D.id.in_(bindparam("ids", expanding=True)),
    _D.state == "sending",
    _D.claimed_by == bindparam("worker"),
)
HELD = {False: _HELD, True: _HELD.with_for_update()}
CLOSE_ATTEMPT = (
    "UPDATE delivery_attempts SET finished_at = ?, outcome = ?, provider_id = ?, error = ?"
    " WHERE id = ?"
)
SET_DONE = (
    "UPDATE deliveries SET state = ?, provider_id = ?, last_error = NULL,"
    " claimed_until = NULL, reclaimed = FALSE, updated_at = ? WHERE id = ?"
)
SET_RETRY = (
    "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, last_error = ?,"
    " claimed_until = NULL, reclaimed = FALSE, updated_at = ? WHERE id = ?"
)


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
    # claims in the running pipeline, not yet settled (changed on its loop only)
    open: int = field(default=0, init=False)
    _handed: deque[Claimed] = field(default_factory=deque, init=False, repr=False)
    # the running pipeline's loop and wake-up event, for `hand` from other threads
    _pipeline: tuple[asyncio.AbstractEventLoop | None, asyncio.Event | None] = field(
        default=(None, None), init=False, repr=False
    )

    @property
    def lease(self) -> timedelta:
        # a reclaimed send may look up, send and look up again: three timeouts
        return timedelta(seconds=self.routing.send_timeout_s * 3 + 30)

    @property
    def window(self) -> int:
        """Claimed sends in flight at most: two batches, so one is claimed while the
        other is sent."""
        return max(self.routing.batch, 1) * 2

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def concurrency(self, channel: str) -> int:
        if channel in self.limits:
            return max(int(self.limits[channel]), 1)
        notifier = self.notifiers.get(channel)
        kind = str(getattr(notifier, "name", ""))
        return DEFAULT_CONCURRENCY.get(kind, FALLBACK_CONCURRENCY)

    # --- claim ----------------------------------------------------------------------

    def claim(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Claim up to `limit` due deliveries in one statement, and open an attempt
        each (one multi-row INSERT)."""
        limit = limit or self.routing.batch
        with session_scope(self.engine) as session:
            rows = session.execute(CLAIM[self._postgres], self._claim_params(now, limit)).all()
            return self._open(session, rows, now)

    def claim_new(
        self, session: Session, alerts: Mapping[int, str], now: datetime, limit: int
    ) -> list[Claimed]:
        """In the caller's transaction (the group writer's, which has just written
        these alerts): claim their deliveries that are due now, critical ones first, up
        to `limit`. Committed with the alerts and handed over in memory (`hand`), a
        stop alert's send skips the claim's own transaction and thread hop."""
        if not alerts or limit <= 0:
            return []
        params = {**self._claim_params(now, limit), "alerts": sorted(alerts)}
        rows = session.execute(CLAIM_NEW, params).all()
        return self._open(session, rows, now, alerts)

    def _claim_params(self, now: datetime, limit: int) -> dict[str, Any]:
        return {"now": now, "limit": limit, "worker": self.worker, "until": now + self.lease}

    def _open(
        self,
        session: Session,
        rows: Sequence[Row[Any]],
        now: datetime,
        codes: Mapping[int, str] | None = None,
    ) -> list[Claimed]:
        """An attempt opened for each claimed row (one INSERT), and what to send."""
        if not rows:
            return []
        rows = sorted(rows, key=lambda r: r.id)
        if codes is None:
            codes = {
                i: code
                for i, code in session.execute(
                    ALERT_CODES, {"ids": sorted({r.lead_alert_id for r in rows})}
                )
            }
        targets = [r.channels[r.channel_index] for r in rows]
        started = bind_time(session.get_bind().dialect, now)
        opened: dict[int, int] = {
            row[0]: row[1]
            for row in insert_returning(
                session,
                OPEN_ATTEMPTS,
                [
                    (r.id, channel, address, started, self.worker)
                    for r, (channel, address) in zip(rows, targets, strict=True)
                ],
                "delivery_id, id",
            )
        }
        return [
            Claimed(
                delivery_id=r.id,
                attempt_id=opened[r.id],
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
            for r, (channel, address) in zip(rows, targets, strict=True)
        ]

    @property
    def room(self) -> int:
        """How many more claims fit in the window now (read from any thread: a
        snapshot, which is all a limit needs)."""
        return self.window - self.open - len(self._handed)

    def hand(self, claims: Sequence[Claimed]) -> None:
        """Claims made (and committed) elsewhere, to send: the running pipeline takes
        them at once, or the next `run_once` does. Safe from any thread."""
        self._handed.extend(claims)
        loop, arrived = self._pipeline
        if loop is not None and arrived is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(arrived.set)

    @property
    def handed(self) -> bool:
        return bool(self._handed)

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
            # asyncio.timeout, not wait_for: no second task per send
            async with asyncio.timeout(self.routing.send_timeout_s):
                result = await notifier.send(c.notification)
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
            async with asyncio.timeout(self.routing.send_timeout_s):
                return await notifier.lookup(c.notification)
        except Exception:
            log.warning("delivery.lookup_failed", delivery_id=c.delivery_id, exc_info=True)
            return None

    # --- settle ---------------------------------------------------------------------

    def settle(self, c: Claimed, result: SendResult, now: datetime) -> None:
        self.settle_many([(c, result)], now)

    def settle_many(self, outcomes: Sequence[tuple[Claimed, SendResult]], now: datetime) -> bool:
        """Record every outcome in one transaction: one read of the claims still held,
        then one executemany per kind of write (attempts closed; deliveries done or due
        again). A permanent failure (rare) fails over through the ORM. True when a
        failover made a delivery due at once (the pipeline then claims again)."""
        if not outcomes:
            return False
        requeued = False
        # bound once per batch: a disabled level is then a no-op call, not a lookup
        logger = log.bind()
        # the latency histogram's child per (channel, severity), looked up once a batch
        observers: dict[tuple[str, str], Callable[[float], None]] = {}
        with session_scope(self.engine) as session:
            held = {
                r.id: r
                for r in session.execute(
                    HELD[self._postgres],
                    {"ids": [c.delivery_id for c, _ in outcomes], "worker": self.worker},
                )
            }
            dialect = session.get_bind().dialect
            at = bind_time(dialect, now)
            closed: list[tuple[Any, ...]] = []
            done: list[tuple[Any, ...]] = []
            retry: list[tuple[Any, ...]] = []
            failed: list[tuple[int, str | None]] = []
            for c, result in outcomes:
                closed.append((at, result.outcome, result.provider_id, result.error, c.attempt_id))
                row = held.get(c.delivery_id)
                if row is None:
                    logger.warning("delivery.lost_claim", delivery_id=c.delivery_id)
                    continue
                outcome, error = result.outcome, result.error
                if (
                    outcome in ("transient", "unknown")
                    and row.attempts >= self.routing.max_attempts
                ):
                    outcome, error = "permanent", f"gave up after {row.attempts} attempts: {error}"
                if outcome == "delivered":
                    notifier = self.notifiers.get(c.channel)
                    state = "sent" if getattr(notifier, "receipts", False) else "delivered"
                    done.append((state, result.provider_id, at, row.id))
                    if row.purpose == "alert":
                        observe = observers.get((c.channel, row.severity))
                        if observe is None:
                            observe = observers[(c.channel, row.severity)] = VALUE_TO_SEND.labels(
                                channel=c.channel, severity=row.severity
                            ).observe
                        observe(max((now - row.created_at).total_seconds(), 0.0))
                elif outcome in ("transient", "unknown"):
                    state = "pending"
                    delay = backoff(row.attempts, self.routing, self.rand)
                    if result.retry_after_s:
                        delay = max(delay, timedelta(seconds=result.retry_after_s))
                    retry.append((bind_time(dialect, now + delay), error, at, row.id))
                else:
                    failed.append((row.id, error))
                    continue  # logged once its failover is known
                logger.info(
                    "delivery.attempt",
                    delivery_id=row.id,
                    channel=c.channel,
                    outcome=result.outcome,
                    state=state,
                    patient_id=c.notification.patient_id or None,
                )
            executemany(session, CLOSE_ATTEMPT, closed)
            executemany(session, SET_DONE, done)
            executemany(session, SET_RETRY, retry)
            for delivery_id, error in failed:
                row_obj = session.get(DeliveryRow, delivery_id)
                assert row_obj is not None
                row_obj.claimed_until = None
                row_obj.reclaimed = False
                row_obj.updated_at = now
                fail_over(session, row_obj, error, self.routing, now)
                requeued = True
                logger.info(
                    "delivery.attempt",
                    delivery_id=delivery_id,
                    channel=row_obj.channels[row_obj.channel_index][0],
                    outcome="permanent",
                    state=row_obj.state,
                    patient_id=row_obj.patient_id,
                )
        return requeued

    # --- the pipeline ---------------------------------------------------------------

    async def run_once(self, stop: Callable[[], bool] | None = None, claim: bool = True) -> int:
        """Drain what is due now: claim batches while they come back full, keep at most
        `window` claimed sends unsettled (each channel at its own concurrency), and settle
        whatever finished while the last settle ran, together. Claims handed over
        (`hand`) join at once. A hung provider holds up only its own channel's slots.
        Database work runs off the loop, one statement group at a time, while sends go
        on. `stop()` true: claim no more, finish and settle what is in flight (handed
        claims too: they are committed and in memory). `claim=False`: send what was
        handed, claim nothing unless a failover asks. Returns how many sends were
        claimed or taken."""
        batch = max(self.routing.batch, 1)
        window = max(self.window, batch)
        gates: dict[str, asyncio.Semaphore] = {}
        finished: list[tuple[Claimed, SendResult]] = []
        arrived = asyncio.Event()
        inflight: set[asyncio.Task[None]] = set()
        self._pipeline = (asyncio.get_running_loop(), arrived)
        self.open = 0

        async def send(c: Claimed) -> None:
            gate = gates.get(c.channel)
            if gate is None:
                gate = gates[c.channel] = asyncio.Semaphore(self.concurrency(c.channel))
            async with gate:
                result = await self._send(c)
            finished.append((c, result))
            arrived.set()

        def start(claimed: Sequence[Claimed]) -> None:
            self.open += len(claimed)
            for c in claimed:
                task = asyncio.ensure_future(send(c))
                inflight.add(task)
                task.add_done_callback(inflight.discard)

        total = 0
        more = claim
        try:
            while True:
                if self._handed:
                    taken = [self._handed.popleft() for _ in range(len(self._handed))]
                    total += len(taken)
                    start(taken)
                if finished:
                    outcomes = finished[:]
                    del finished[:]
                    try:
                        if await asyncio.to_thread(self.settle_many, outcomes, self.clock.now()):
                            more = True
                    finally:
                        self.open -= len(outcomes)
                if stop is not None and stop():
                    more = False
                if more and len(inflight) + len(finished) + batch <= window:
                    claimed = await asyncio.to_thread(self.claim, self.clock.now(), batch)
                    total += len(claimed)
                    more = len(claimed) == batch
                    start(claimed)
                elif not finished and not self._handed:
                    if not inflight:
                        return total
                    arrived.clear()
                    if self._handed:  # handed between the check and the clear
                        continue
                    await arrived.wait()
        finally:
            self._pipeline = (None, None)
            # Cancelled (shutdown): unsent claims stay claimed and are retaken after the
            # lease, settled by lookup first.
            for t in list(inflight):
                t.cancel()
            self.open = 0
