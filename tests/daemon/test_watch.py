"""Watching the watcher: silent feeds, delivery gaps, the dead man's switch, readiness,
the daily summary. A Service on a pinned clock over real SQLite, the fake Twilio API
and aiosmtpd (tests/daemon/conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from monitor.clock import ManualClock
from monitor.daemon import Service, load_config
from monitor.secrets import SecretSource
from monitor.services.latency import VALUE_TO_SEND
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, DeliveryRow, InboundMessageRow
from monitor.web.app import create_app
from tests.daemon.conftest import SECRETS, START, config_text
from tests.daemon.helpers import enrol, lab
from tests.fakes.ping_receiver import FakePingReceiver
from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.fakes.twilio_api import FakeTwilioAPI

# START is Monday 2026-03-02 09:00 UTC.
WATCH = """
[daemon]
heartbeat_url = "{ping}/ping/abc"
heartbeat_timeout_s = 2

[sources.mllp]
enabled = true
port = 0
expect_every_minutes = 60
silence_grace_minutes = 15
working_hours = "08:00-18:00"
working_days = ["mon", "tue", "wed", "thu", "fri"]
"""


@dataclass
class Watched:
    service: Service
    clock: ManualClock
    ping: FakePingReceiver
    db: str


@pytest.fixture
def watched(
    tmp_path: Path, fake_twilio: FakeTwilioAPI, smtp_server: FakeSMTPServer, tls_files: TLSFiles
) -> Iterator[Watched]:
    with FakePingReceiver() as ping:
        db = f"sqlite:///{tmp_path / 'w.db'}"
        path = tmp_path / "monitor.toml"
        extra = WATCH.format(ping=ping.url)
        path.write_text(config_text(db, fake_twilio.url, smtp_server, tls_files, extra))
        secrets = SecretSource(env=SECRETS)
        engine = make_engine(db)
        upgrade(engine)
        clock = ManualClock(START)
        service = Service(
            load_config(str(path), secrets), clock=clock, secrets=secrets, engine=engine
        )
        yield Watched(service, clock, ping, db)
        engine.dispose()


def message(w: Watched, n: int) -> None:
    with session_scope(w.service.engine) as s:
        s.add(
            InboundMessageRow(
                source="mllp", sender="LAB", message_id=f"m{n}", received_at=w.clock.now(), raw=""
            )
        )


def away(tmp_path: Path) -> Engine:
    """An engine on a database that cannot be opened (its directory is a file)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'x.db'}")
    (tmp_path / "gone").rmdir()
    (tmp_path / "gone").write_text("")
    return engine


def service_alerts(w: Watched, rule: str) -> list[AlertRow]:
    with session_scope(w.service.engine) as s:
        return list(s.exec(select(AlertRow).where(AlertRow.rule == rule)))


def test_a_silent_feed_raises_once_per_silence_counting_working_hours_only(
    watched: Watched,
) -> None:
    w = watched
    message(w, 1)
    w.clock.advance(timedelta(minutes=74))
    assert w.service.watch.check_feeds() == []  # 60 + 15 grace not yet passed
    w.clock.advance(timedelta(minutes=2))
    [first] = w.service.watch.check_feeds()
    assert first.rule == "system.source_silent" and first.patient_id is None
    assert "mllp" in first.message and "1 h 16 min" in first.message
    w.clock.advance(timedelta(hours=3))
    assert w.service.watch.check_feeds() == []  # the same silence: nothing new
    with session_scope(w.service.engine) as s:
        sent = list(s.exec(select(DeliveryRow).where(DeliveryRow.lead_alert_id == first.id)))
    assert sent and all("lab-monitor service" in d.text for d in sent)
    assert all("None" not in d.subject for d in sent)

    # A message at 17:30 Monday; the night and the hours before 08:00 are not silence.
    w.clock.set(datetime(2026, 3, 2, 17, 30, tzinfo=UTC))
    message(w, 2)
    w.clock.set(datetime(2026, 3, 3, 8, 44, tzinfo=UTC))  # 30 + 44 working minutes
    assert w.service.watch.check_feeds() == []
    w.clock.set(datetime(2026, 3, 3, 8, 46, tzinfo=UTC))
    [second] = w.service.watch.check_feeds()
    assert second.key != first.key
    assert len(service_alerts(w, "system.source_silent")) == 2


def test_the_weekend_is_not_silence_when_the_feed_works_weekdays(watched: Watched) -> None:
    w = watched
    w.clock.set(datetime(2026, 3, 6, 17, 50, tzinfo=UTC))  # Friday
    message(w, 1)
    w.clock.set(datetime(2026, 3, 9, 9, 0, tzinfo=UTC))  # Monday: 10 + 60 working minutes
    assert w.service.watch.check_feeds() == []


def test_the_auditor_catches_a_delivery_left_in_sending(watched: Watched) -> None:
    w = watched
    enrol(w, "P-1")  # type: ignore[arg-type]
    [alert] = [a for a in lab(w, "P-1", alt=600, ast=30) if a.severity == "critical"][:1]  # type: ignore[arg-type]
    with session_scope(w.service.engine) as s:
        d = s.exec(select(DeliveryRow).where(DeliveryRow.group_id == alert.group_id)).first()
        assert d is not None
        d.state, d.claimed_by, d.claimed_until = "sending", "gone:1:x", w.clock.now()
        s.add(d)
        others = s.exec(
            select(DeliveryRow).where(
                DeliveryRow.group_id == alert.group_id, DeliveryRow.id != d.id
            )
        ).all()
        for o in others:
            o.state = "delivered"
            s.add(o)
        stuck_id = d.id
    w.clock.advance(timedelta(minutes=14))
    assert w.service.watch.audit_deliveries() == []  # within its window
    w.clock.advance(timedelta(minutes=2))
    [gap] = w.service.watch.audit_deliveries()
    assert gap.rule == "system.delivery_gap" and gap.severity == "critical"
    assert gap.details["delivery"] == stuck_id and alert.code in gap.message
    assert w.service.watch.audit_deliveries() == []  # once per gap


def test_the_auditor_catches_an_alert_that_reached_nobody(watched: Watched) -> None:
    w = watched
    with session_scope(w.service.engine) as s:
        s.add(
            AlertRow(
                code="NOBODY",
                rule="stop.transaminase",
                severity="critical",
                key="k",
                at=w.clock.now(),
                raised_at=w.clock.now(),
                message="m",
                profile="-",
                group_id="g-nobody",
            )
        )
    w.clock.advance(timedelta(minutes=16))
    [gap] = w.service.watch.audit_deliveries()
    assert "NOBODY" in gap.message and "never sent" in gap.message


def test_the_heartbeat_stops_when_sweeps_stop(watched: Watched, tmp_path: Path) -> None:
    w = watched
    w.service.sweep()
    w.service.sweep()
    assert w.ping.pings == ["/ping/abc", "/ping/abc"]
    good = w.service.engine
    w.service.engine = away(tmp_path)  # database away
    with pytest.raises(Exception, match="unable to open"):
        w.service.sweep()
    assert len(w.ping.pings) == 2
    w.service.engine = good
    w.service.sweep()
    assert len(w.ping.pings) == 3


async def test_readyz_turns_503_when_the_database_goes_away_and_200_when_it_returns(
    watched: Watched, tmp_path: Path
) -> None:
    w = watched
    sched = w.service.start_scheduler(60, 1, 30, first_run=datetime.now(UTC) + timedelta(hours=1))
    try:
        transport = httpx.ASGITransport(app=create_app(w.service))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text  # just started: the first sweep is not late yet
            w.clock.advance(timedelta(minutes=5))
            r = await client.get("/readyz")
            assert r.status_code == 503 and "sweep" in r.json()["reasons"][0]
            w.service.sweep()
            assert (await client.get("/readyz")).status_code == 200
            good = w.service.engine
            w.service.engine = away(tmp_path)
            r = await client.get("/readyz")
            assert r.status_code == 503 and "database unreachable" in r.json()["reasons"][0]
            w.service.engine = good
            assert (await client.get("/readyz")).status_code == 200
            sched.pause()
            sched.shutdown(wait=False)
            r = await client.get("/readyz")
            assert r.status_code == 503 and "scheduler not running" in r.json()["reasons"]
    finally:
        if sched.running:
            sched.shutdown(wait=False)


def test_the_watchdog_is_withheld_while_sweeps_do_not_finish(watched: Watched) -> None:
    w = watched
    pinged: list[bool] = []
    w.service.sd.watchdog = lambda: pinged.append(True) or True  # type: ignore[method-assign]
    w.service.sweep()
    assert w.service.watch.watchdog() is True
    w.clock.advance(timedelta(minutes=10))
    assert w.service.watch.watchdog() is False
    assert pinged == [True]


def test_the_daily_summary_goes_once_a_day(watched: Watched) -> None:
    w = watched
    enrol(w, "P-1")  # type: ignore[arg-type]
    lab(w, "P-1", alt=600, ast=30)  # type: ignore[arg-type]
    [summary] = w.service.watch.summary()
    assert summary.rule == "system.daily_summary" and summary.severity == "info"
    assert "critical" in summary.message and "Open critical alerts: 1" in summary.message
    assert w.service.watch.summary() == []


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with exactly these labels (in any order), or 0."""
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        metric, _, rest = series.partition("{")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if metric == name and found == labels:
            return float(value)
    return 0.0


async def test_metrics_move_as_a_scripted_run_expects(watched: Watched) -> None:
    w = watched
    transport = httpx.ASGITransport(app=create_app(w.service))
    VALUE_TO_SEND.clear()  # this process's histogram: earlier tests sent too
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        before = (await client.get("/metrics")).text
        assert _sample(before, "labmonitor_sweeps_total") == 0
        enrol(w, "P-1")  # type: ignore[arg-type]
        lab(w, "P-1", alt=600, ast=30)  # type: ignore[arg-type]
        message(w, 1)
        w.service.sweep()
        r = await client.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = r.text
        assert _sample(text, "labmonitor_sweeps_total") == 1
        assert _sample(text, "labmonitor_heartbeat_pings_total", result="ok") == 1
        assert (
            _sample(
                text,
                "labmonitor_alerts",
                rule="stop.transaminase",
                severity="critical",
                state="open",
            )
            == 1
        )
        assert _sample(text, "labmonitor_outbox_due") >= 1
        assert _sample(text, "labmonitor_messages", source="mllp", outcome="stored") == 1
        assert (
            _sample(text, "labmonitor_source_last_message_timestamp_seconds", source="mllp")
            == START.timestamp()
        )
        w.clock.advance(timedelta(minutes=2))
        await w.service.dispatch()
        text = (await client.get("/metrics")).text
        assert (
            _sample(text, "labmonitor_delivery_attempts", channel="sms", outcome="delivered") == 1
        )
        assert _sample(text, "labmonitor_outbox_due") == 0
        # the stop alert's SMS went out 2 minutes after the commit that raised it
        late = {"channel": "sms", "severity": "critical"}
        name = "labmonitor_value_to_send_seconds"
        assert _sample(text, f"{name}_count", **late) == 1
        assert _sample(text, f"{name}_sum", **late) == 120
        assert _sample(text, f"{name}_bucket", **late, le="60.0") == 0
        assert _sample(text, f"{name}_bucket", **late, le="300.0") == 1
        assert _sample(text, f"{name}_bucket", **late, le="+Inf") == 1
        assert "P-1" not in text  # counts only
