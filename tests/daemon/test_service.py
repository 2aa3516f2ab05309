"""The service's jobs under a pinned clock: sweep after downtime, errors, reload, SMS ACK."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select
from twilio.request_validator import RequestValidator

from monitor.store.checkpoint import THREAD_NAME
from monitor.store.db import session_scope
from monitor.store.models import PatientRow
from monitor.web.app import create_app
from tests.daemon.conftest import ONCALL_SMS, START, Rig
from tests.daemon.helpers import alerts, deliveries, drain, enrol, lab
from tests.fakes.twilio_api import DEFAULT_AUTH_TOKEN


def test_restart_after_three_days_down_fires_each_missed_deadline_once(rig: Rig) -> None:
    for pid in ("P-1", "P-2", "P-3"):
        enrol(rig, pid)
    rig.clock.set(START + timedelta(days=3))
    lab(rig, "P-2", alt=20)
    # Down for three days: nothing ran. On start, one sweep finds what is due.
    rig.clock.set(START + timedelta(days=6))
    raised = rig.service.sweep()
    assert sorted((a.patient_id, a.rule) for a in raised) == [
        ("P-1", "lab.overdue"),
        ("P-3", "lab.overdue"),
    ]
    assert {a.at for a in raised} == {START + timedelta(days=5)}
    assert rig.service.sweep() == []  # nothing twice
    rig.clock.advance(timedelta(minutes=1))
    assert rig.service.sweep() == []
    assert len([d for d in deliveries(rig) if d.purpose == "alert"]) == 2


def test_sweep_cost_follows_what_is_due(rig: Rig) -> None:
    for i in range(20):
        enrol(rig, f"P-{i}")
    rig.clock.set(START + timedelta(hours=1))
    with session_scope(rig.service.engine) as s:
        due_times = sorted(r.next_check_at for r in s.exec(select(PatientRow)) if r.next_check_at)
    assert all(t > rig.clock.now() for t in due_times)
    assert rig.service.sweep() == []


def test_evaluation_error_raises_its_own_alert_and_keeps_the_deadline(rig: Rig) -> None:
    enrol(rig)
    with session_scope(rig.service.engine) as s:
        row = s.get(PatientRow, "P-1")
        assert row is not None
        row.protocol_id = "withdrawn-profile"  # evaluation will fail: unknown profile
        due = row.next_check_at
        s.add(row)
    rig.clock.set(START + timedelta(days=6))
    raised = rig.service.sweep()
    assert [(a.rule, a.severity) for a in raised] == [("system.evaluation_error", "critical")]
    with session_scope(rig.service.engine) as s:
        row = s.get(PatientRow, "P-1")
        assert row is not None and row.next_check_at == due  # not pushed back
    assert rig.service.sweep() == []  # one alert per stuck deadline, not one per minute


def test_reload_refuses_a_bad_file_and_keeps_the_old_config(rig: Rig) -> None:
    before = rig.service.config
    good = rig.config_path.read_text()
    rig.config_path.write_text(
        good.replace(
            'escalation = ["oncall", "care_team", "coordinators"]', 'escalation = ["nobody"]'
        )
    )
    assert rig.service.reload() is False
    assert rig.service.config is before
    rig.config_path.write_text(
        good.replace("critical_ack_minutes = 15", "critical_ack_minutes = 5")
    )
    assert rig.service.reload() is True
    assert rig.service.config.routing.critical_ack_after == timedelta(minutes=5)
    assert rig.service.dispatcher.routing is rig.service.config.routing


def _signed(url: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(url, form)}


async def test_sms_reply_ack_acknowledges_with_a_valid_signature(rig: Rig) -> None:
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=700, bilirubin=250)
    await drain(rig)
    client = TestClient(create_app(rig.service))
    url = "https://monitor.example.org/twilio/inbound"
    form = {"From": ONCALL_SMS, "Body": f"ack {raised[1].code}"}
    forged = client.post("/twilio/inbound", data=form, headers={"X-Twilio-Signature": "nope"})
    assert forged.status_code == 403
    assert all(a.state == "open" for a in alerts(rig))
    ok = client.post("/twilio/inbound", data=form, headers=_signed(url, form))
    assert ok.status_code == 200 and "Acknowledged" in ok.text
    group = [a for a in alerts(rig) if a.group_id == raised[0].group_id]
    assert {a.state for a in group} == {"acknowledged"}
    assert {a.acknowledged_by for a in group} == {"Dr On-Call"}
    rig.clock.advance(timedelta(minutes=30))
    assert rig.service.escalate() == 0


async def test_twilio_status_callback_moves_sent_to_delivered(rig: Rig) -> None:
    """With a status callback configured, acceptance is `sent`; the receipt delivers."""
    from monitor.daemon import Service, load_config
    from monitor.secrets import SecretSource
    from tests.daemon.conftest import SECRETS

    text = rig.config_path.read_text().replace(
        "timeout_s = 0.5",
        'timeout_s = 0.5\nstatus_callback_base_url = "https://monitor.example.org"',
    )
    rig.config_path.write_text(text)
    secrets = SecretSource(env=SECRETS)
    rig.service = Service(
        load_config(str(rig.config_path), secrets),
        clock=rig.clock,
        secrets=secrets,
        engine=rig.service.engine,
    )
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    lab(rig, "P-1", alt=700)
    await drain(rig)
    [d] = deliveries(rig)
    assert d.state == "sent"
    assert rig.twilio.messages[0].status_callback == (
        f"https://monitor.example.org/twilio/status/{d.id}"
    )
    client = TestClient(create_app(rig.service))
    url = f"https://monitor.example.org/twilio/status/{d.id}"
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    assert (
        client.post(f"/twilio/status/{d.id}", data=form, headers=_signed(url, form)).status_code
        == 204
    )
    [d] = deliveries(rig)
    assert d.state == "delivered"


def test_healthz_reports_outbox_depth(rig: Rig) -> None:
    enrol(rig, tpmt="unknown")
    body = TestClient(create_app(rig.service)).get("/healthz").json()
    assert body["outbox_depth"] == 1 and body["failed_deliveries"] == 0


async def test_twilio_failed_receipt_fails_over_and_tells_coordinators(rig: Rig) -> None:
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    lab(rig, "P-1", alt=700)
    await drain(rig)
    [d] = deliveries(rig)
    client = TestClient(create_app(rig.service))
    url = f"https://monitor.example.org/twilio/status/{d.id}"
    form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert (
        client.post(f"/twilio/status/{d.id}", data=form, headers=_signed(url, form)).status_code
        == 204
    )
    await drain(rig)
    d = next(x for x in deliveries(rig) if x.id == d.id)
    assert d.state == "delivered" and d.channel_index == 1  # the e-mail contact took over
    to = sorted(m.message["To"] for m in rig.smtp.messages)
    assert to == ["coord@example.org", "oncall@example.org"]
    assert any(a.rule == "delivery.failed" and "30003" in a.message for a in alerts(rig))


async def test_daily_quarantine_count_reaches_coordinators_once_a_day(rig: Rig) -> None:
    assert rig.service.quarantine_digest() is None  # nothing waits: nothing sent
    rig.service.ingest(b"MSH|not a message", "hl7", "mllp")
    rig.service.ingest(b"{}", "fhir", "fhir-push")
    alert = rig.service.quarantine_digest()
    assert alert is not None and alert.patient_id is None
    assert alert.message.startswith("2 lab message(s) wait in quarantine")
    assert rig.service.quarantine_digest() is None  # once a day
    await drain(rig)
    [mail] = rig.smtp.messages
    assert mail.message["To"] == "coord@example.org"
    assert "quarantine.waiting" in mail.message["Subject"]
    rig.clock.advance(timedelta(days=1))
    assert rig.service.quarantine_digest() is not None


def test_upgrade_keeps_rows_when_sqlite_rebuilds_a_table(tmp_path: Path) -> None:
    """Migration 0005 rebuilds `alerts` on SQLite; deliveries pointing at it survive."""
    from alembic import command
    from sqlalchemy import text

    from monitor.store.db import alembic_config, make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    with engine.begin() as c:
        c.execute(
            text(
                "insert into patients (id, weight_kg, start, start_dose_mg, tpmt, baseline, uln, "
                "protocol_id, enrolled_at) values ('P1', 70, '2026-01-01 00:00:00', 50, 'normal', "
                "'{}', '{}', 'azathioprine-seed', '2026-01-01 00:00:00')"
            )
        )
        c.execute(
            text(
                "insert into alerts (code, patient_id, rule, severity, key, at, raised_at, "
                "message, details, profile, group_id, state, chain, escalation_step) "
                "values ('AAA', 'P1', "
                "'lab.overdue', 'warning', 'k', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'm', "
                "'{}', 'p', 'g', 'open', '[]', 0)"
            )
        )
        c.execute(
            text(
                "insert into deliveries (group_id, lead_alert_id, purpose, step, recipient, "
                "channels, channel_index, severity, subject, text, body, state, attempts, "
                "next_attempt_at, "
                "created_at, updated_at) values ('g', 1, 'alert', 0, 'r', '[]', 0, 'warning', 's', "
                "'t', 'b', 'pending', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00')"
            )
        )
    upgrade(engine)
    with engine.begin() as c:
        assert c.execute(text("select count(*) from deliveries")).scalar() == 1
        assert c.execute(text("select patient_id from alerts")).scalar() == "P1"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


async def test_sms_ack_from_an_unknown_number_is_refused(rig: Rig) -> None:
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=700)
    client = TestClient(create_app(rig.service))
    url = "https://monitor.example.org/twilio/inbound"
    form = {"From": "+19995550000", "Body": f"ACK {raised[0].code}"}
    answer = client.post("/twilio/inbound", data=form, headers=_signed(url, form))
    assert answer.status_code == 200 and "not on the lab-monitor contact list" in answer.text
    assert all(a.state == "open" for a in alerts(rig))


def test_reload_gives_the_fhir_poller_the_new_ingest_bounds(rig: Rig) -> None:
    from monitor.sources.fhir_poller import FhirPoller

    service = rig.service
    poller = FhirPoller(
        {"base_url": "http://127.0.0.1:9/fhir"},
        service.engine,
        lambda: (service.config.protocols, service.config.routing, service.mapping),
        rig.clock.now,
        limits=service.parse_limits,
    )
    service.sources.append(poller)
    assert poller.limits.fhir_max_bytes == 10 * 1024 * 1024
    rig.config_path.write_text(rig.config_path.read_text() + "\n[ingest]\nfhir_max_bytes = 65536\n")

    assert service.reload() is True

    assert service.parse_limits.fhir_max_bytes == 65536
    assert poller.limits is service.parse_limits
    poller.client.close()


async def test_the_daemon_runs_the_checkpointer_while_it_runs(rig: Rig) -> None:
    service = rig.service
    assert service.checkpointer is not None
    run = asyncio.create_task(service.run(web=False))
    for _ in range(200):  # the start-up is real: wait for the thread, not for a time
        if THREAD_NAME in {t.name for t in threading.enumerate()}:
            break
        await asyncio.sleep(0.05)
    assert THREAD_NAME in {t.name for t in threading.enumerate()}
    service.stopping.set()
    await asyncio.wait_for(run, 60)
    assert THREAD_NAME not in {t.name for t in threading.enumerate()}
    assert service.checkpointer.runs >= 1
