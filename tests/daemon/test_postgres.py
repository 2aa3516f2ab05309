"""The multi-instance path on real PostgreSQL: several processes, one database.

Each test gets a fresh database. Two dispatchers (separate engines, as two processes
would have) race for the same deliveries: every alert is sent exactly once. Two
evaluations of one patient at once store each alert once.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, col, select

from monitor.clock import ManualClock
from monitor.daemon import Config, load_config
from monitor.schemas import LabIn, PatientIn
from monitor.secrets import SecretSource
from monitor.services.dispatch import Dispatcher
from monitor.services.escalation import escalate_due
from monitor.services.evaluate import evaluate_patient
from monitor.services.intake import enroll, record_event
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, DeliveryAttemptRow, DeliveryRow
from tests.conftest import PG
from tests.daemon.conftest import SECRETS, config_text
from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.fakes.twilio_api import FakeTwilioAPI

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG, reason="MONITOR_TEST_PG_URL not set (scripts/test sets it)"),
]
NOW = datetime(2026, 3, 5, 9, tzinfo=UTC)


def test_migrations_on_postgres_match_the_models(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    engine.dispose()


@pytest.fixture
def cfg(
    pg_url: str,
    tmp_path: Path,
    fake_twilio: FakeTwilioAPI,
    smtp_server: FakeSMTPServer,
    tls_files: TLSFiles,
) -> Config:
    """The daemon's config for this database, with the fake Twilio and SMTP server."""
    path = tmp_path / "monitor.toml"
    path.write_text(config_text(pg_url, fake_twilio.url, smtp_server, tls_files))
    return load_config(str(path), SecretSource(env=SECRETS))


def _seed(engine: Engine, cfg: Config, n: int) -> None:
    protocols = cfg.protocols
    routing = cfg.routing
    for i in range(n):
        pid = f"P-{i:02d}"
        with session_scope(engine) as s:
            enroll(
                s,
                PatientIn.model_validate(
                    {
                        "id": pid,
                        "weight_kg": 70,
                        "start": (NOW - timedelta(days=2)).isoformat(),
                        "tpmt": "normal",
                        "baseline": {"alt": 20, "ast": 20},
                    }
                ),
                NOW - timedelta(days=2),
                protocols,
                "azathioprine-seed",
                routing,
            )
        lab = LabIn.model_validate({"kind": "lab", "at": NOW.isoformat(), "results": {"alt": 400}})
        with session_scope(engine) as s:
            record_event(s, pid, "lab", lab.at, lab.payload(), NOW, protocols, routing=routing)


async def test_two_dispatchers_send_each_delivery_once(
    pg_url: str, cfg: Config, fake_twilio: FakeTwilioAPI
) -> None:
    setup = make_engine(pg_url)
    upgrade(setup)
    _seed(setup, cfg, 10)
    fake_twilio.post_delay_s = 0.05
    clock = ManualClock(NOW)
    engines = [make_engine(pg_url), make_engine(pg_url)]
    a, b = (
        Dispatcher(e, cfg.routing, cfg.notifiers, clock, worker=f"w{i}")
        for i, e in enumerate(engines)
    )
    for _ in range(10):  # retries (a slow answer) are allowed; double sends are not
        await asyncio.gather(a.run_once(), b.run_once())
        clock.advance(timedelta(minutes=10))
    with session_scope(setup) as s:
        rows = s.exec(select(DeliveryRow)).all()
        codes = {s.get(AlertRow, r.lead_alert_id).code for r in rows}  # type: ignore[union-attr]
    assert len(rows) == 10 and all(r.state == "delivered" for r in rows)
    sent = [c for m in fake_twilio.messages for c in codes if c in m.body]
    assert sorted(sent) == sorted(codes)  # each exactly once
    claimed_by = {t for r in rows for t in [r.provider_id] if t}
    assert len(claimed_by) == 10  # one provider message per delivery
    for e in (*engines, setup):
        e.dispose()


def test_concurrent_evaluations_and_escalations_store_each_thing_once(
    pg_url: str, cfg: Config
) -> None:
    setup = make_engine(pg_url)
    upgrade(setup)
    with session_scope(setup) as s:
        enroll(
            s,
            PatientIn.model_validate(
                {
                    "id": "P-1",
                    "weight_kg": 70,
                    "start": (NOW - timedelta(days=30)).isoformat(),
                    "tpmt": "normal",
                    "baseline": {"alt": 20, "ast": 20},
                }
            ),
            NOW - timedelta(days=30),
            cfg.protocols,
            "azathioprine-seed",
            None,
        )
    engines = [make_engine(pg_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def evaluate(engine: Engine) -> None:
        barrier.wait()
        try:
            with session_scope(engine) as s:
                evaluate_patient(s, "P-1", NOW, cfg.protocols, cfg.routing)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(setup) as s:
        alerts = s.exec(select(AlertRow)).all()
        assert [a.rule for a in alerts] == ["lab.overdue"]
        assert len(s.exec(select(DeliveryRow)).all()) == 1

    later = NOW + timedelta(hours=5)
    barrier = threading.Barrier(len(engines))
    counts: list[int] = []

    def escalate(engine: Engine) -> None:
        barrier.wait()
        with session_scope(engine) as s:
            counts.append(escalate_due(s, cfg.routing, later))

    threads = [threading.Thread(target=escalate, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 1  # one reminder, whoever sent it
    with session_scope(setup) as s:
        assert len(s.exec(select(DeliveryRow)).all()) == 2
    for e in (*engines, setup):
        e.dispose()


def test_history_reads_keep_one_query_text_whatever_the_number_of_patients(pg_url: str) -> None:
    """`= ANY(array)`, not an expanding IN: psycopg converts a query text once and
    caches it, and an IN list is a new, long text for each length (issue 10)."""
    from sqlalchemy import event

    from monitor.services import histories

    engine = make_engine(pg_url)
    upgrade(engine)
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, st, *a: seen.append(st))
    texts = []
    for n in (1, 3, 7):
        seen.clear()
        with session_scope(engine) as s:
            histories.load(s, [f"P-{i}" for i in range(n)], {}, NOW)
            histories.known_alerts(s, [f"P-{i}" for i in range(n)])
            histories.silences(s, [f"P-{i}" for i in range(n)], NOW)
        texts.append([t for t in seen if t.lstrip().upper().startswith("SELECT")])
    assert texts[0] == texts[1] == texts[2]
    assert all("ANY" in t for t in texts[0])
    engine.dispose()


async def test_a_retried_send_on_postgres_keeps_its_attempts_and_times(
    pg_url: str, cfg: Config, fake_twilio: FakeTwilioAPI
) -> None:
    """The attempt and settle writes go to psycopg's cursor as they are
    (monitor/store/driver.py): a transient answer leaves the delivery due again after
    its backoff, with its error and an aware UTC time; the resend settles it."""
    engine = make_engine(pg_url)
    upgrade(engine)
    _seed(engine, cfg, 1)
    fake_twilio.queue_responses(503)
    clock = ManualClock(NOW)
    dispatcher = Dispatcher(engine, cfg.routing, cfg.notifiers, clock, worker="w0")
    assert await dispatcher.run_once() == 1
    with session_scope(engine) as s:
        [row] = s.exec(select(DeliveryRow)).all()
        [attempt] = s.exec(select(DeliveryAttemptRow)).all()
    assert row.state == "pending" and row.claimed_until is None and not row.reclaimed
    assert row.next_attempt_at > NOW and row.next_attempt_at.utcoffset() == timedelta(0)
    assert row.last_error and "503" in row.last_error
    assert attempt.outcome == "transient" and attempt.finished_at == NOW
    assert attempt.started_at == NOW and attempt.worker == "w0"
    assert await dispatcher.run_once() == 0  # its backoff holds
    clock.set(row.next_attempt_at)
    assert await dispatcher.run_once() == 1
    with session_scope(engine) as s:
        [row] = s.exec(select(DeliveryRow)).all()
        outcomes = [
            a.outcome
            for a in s.exec(select(DeliveryAttemptRow).order_by(col(DeliveryAttemptRow.id)))
        ]
    assert row.state == "delivered" and row.provider_id and row.last_error is None
    assert outcomes == ["transient", "delivered"]
    assert len(fake_twilio.messages) == 1
    engine.dispose()
