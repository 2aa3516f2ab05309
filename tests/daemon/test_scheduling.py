"""Scheduling that never slips: wake-ups during a run, late start-up sweeps, paged
sweeps, per-channel concurrency and instance leases (pinned clock, SQLite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from monitor.notifiers.base import Notification, SendResult
from monitor.services.dispatch import Dispatcher
from monitor.services.instances import Heartbeat, free_lapsed
from monitor.services.jobs import STATS
from monitor.services.sweep import due_batches
from monitor.store.db import session_scope
from monitor.store.models import DeliveryRow, InstanceRow
from tests.daemon.conftest import START, Rig
from tests.daemon.helpers import deliveries, enrol, lab


class Recording:
    """A channel that records sends and can run a hook during the first one."""

    name: ClassVar[str] = "recording"

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.during_first: list[object] = []
        self.active = 0
        self.peak = 0

    async def send(self, notification: Notification) -> SendResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0)
        if not self.sent and self.during_first:
            hook = self.during_first.pop()
            hook()  # type: ignore[operator]
        self.sent.append(notification.delivery_id)
        await asyncio.sleep(0)
        self.active -= 1
        return SendResult("delivered", provider_id=f"r-{notification.delivery_id}")

    async def lookup(self, notification: Notification) -> SendResult | None:
        return None


def _all_to(rig: Rig, channel: Recording) -> None:
    rig.service.dispatcher.notifiers = {"sms": channel, "email": channel}


async def test_a_wake_up_during_a_run_makes_it_go_round_again(rig: Rig) -> None:
    enrol(rig, "P-1")
    enrol(rig, "P-2")
    lab(rig, "P-1", alt=640, ast=300)
    channel = Recording()
    _all_to(rig, channel)

    def new_alert_mid_run() -> None:
        lab(rig, "P-2", alt=640, ast=300)
        rig.service.wake_dispatcher()

    channel.during_first.append(new_alert_mid_run)
    await rig.service.dispatch()
    # the alert raised while the first send was going out was not left for a tick
    assert {d.patient_id for d in deliveries(rig) if d.state == "delivered"} == {"P-1", "P-2"}


async def test_sends_per_channel_never_exceed_max_concurrency(rig: Rig) -> None:
    for i in range(12):
        enrol(rig, f"P-{i}")
        lab(rig, f"P-{i}", alt=640, ast=300)
    channel = Recording()
    d = rig.service.dispatcher
    dispatcher = Dispatcher(
        d.engine, d.routing, {"sms": channel, "email": channel}, d.clock, limits={"sms": 3}
    )
    assert await dispatcher.run_once() >= 12
    assert len(channel.sent) >= 12
    assert 1 < channel.peak <= 3


async def test_the_start_up_sweep_runs_even_when_the_loop_was_busy(rig: Rig) -> None:
    enrol(rig, "P-1")
    rig.clock.set(START + timedelta(days=6))  # P-1's first check is overdue
    swept = asyncio.Event()
    real = rig.service.sweep

    def sweep() -> list[object]:
        out = real()
        swept.set()
        return out  # type: ignore[return-value]

    rig.service.sweep = sweep  # type: ignore[method-assign,assignment]
    before = STATS.of("sweep").late
    # A loop busy for 10 s at start-up: the first sweep's time is long past when the
    # scheduler gets to it. APScheduler's default 1 s grace would skip it.
    first = datetime.now(UTC) - timedelta(seconds=10)
    sched = rig.service.start_scheduler(3600, 3600, 3600, first_run=first)
    try:
        await asyncio.wait_for(swept.wait(), timeout=20)
    finally:
        sched.shutdown(wait=False)
    assert STATS.of("sweep").late == before + 1
    assert any(d.patient_id == "P-1" for d in deliveries(rig))


def test_sweep_pages_through_every_due_patient_once(rig: Rig) -> None:
    for i in range(7):
        enrol(rig, f"P-{i}")
    now = START + timedelta(days=6)
    pages = list(due_batches(rig.service.engine, now, size=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(p for page in pages for p in page) == [f"P-{i}" for i in range(7)]


def test_a_lapsed_instance_s_claims_are_freed_by_a_survivor(rig: Rig) -> None:
    engine = rig.service.engine
    enrol(rig, "P-1")
    lab(rig, "P-1", alt=640, ast=300)
    now = START
    dead = Heartbeat(engine, "other-host:4242:abcdef", lease=timedelta(seconds=5))
    dead.register(now)
    d = rig.service.dispatcher
    Dispatcher(d.engine, d.routing, d.notifiers, d.clock, worker=dead.instance_id).claim(now)
    survivor = Heartbeat(engine, "this-host:1:123456", lease=timedelta(seconds=5))
    survivor.register(now)
    assert free_lapsed(engine, now + timedelta(seconds=3)) == 0  # lease still good
    later = now + timedelta(seconds=6)
    assert survivor.beat(later) >= 1  # other host, dead pid unknown: freed by lease
    with session_scope(engine) as s:
        assert s.get(InstanceRow, dead.instance_id) is None
        assert s.get(InstanceRow, survivor.instance_id) is not None
    claimed = d.claim(later)
    assert claimed and all(c.reclaimed for c in claimed)  # settled by lookup first
    with session_scope(engine) as s:
        row = s.get(DeliveryRow, claimed[0].delivery_id)
        assert row is not None and row.claimed_by == d.worker
