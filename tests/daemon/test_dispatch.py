"""Delivery through real transports: one SMS per evaluation, retries, failover, hangs."""

from __future__ import annotations

from datetime import timedelta

from monitor.services.alerts import acknowledge
from monitor.store.db import session_scope
from tests.daemon.conftest import ONCALL_SMS, START, Rig
from tests.daemon.helpers import alerts, attempts, deliveries, drain, enrol, lab
from tests.fakes.twilio_api import Reply


async def test_three_stop_criteria_in_one_evaluation_give_one_sms(rig: Rig) -> None:
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=700, bilirubin=250)
    assert [a.rule for a in raised] == ["stop.transaminase", "stop.bilirubin", "stop.grade4"]
    await drain(rig)
    sms = rig.twilio.messages
    assert len(sms) == 1
    assert sms[0].to == ONCALL_SMS
    for rule_text in ("ALT 700 U/L is >= 5x baseline", "bilirubin 250 umol/L", "Grade 4"):
        assert rule_text in sms[0].body
    assert "STOP azathioprine now" in sms[0].body
    assert f"ACK {raised[0].code}" in sms[0].body
    assert "P-1" in sms[0].body
    [d] = deliveries(rig)
    assert d.state == "delivered" and d.provider_id == sms[0].sid
    assert [t.outcome for t in attempts(rig)] == ["delivered"]


async def test_email_read_back_from_the_smtp_server(rig: Rig) -> None:
    enrol(rig, tpmt="unknown")  # enrollment.tpmt_unknown: a warning, routed to the care team
    await drain(rig)
    [mail] = rig.smtp.messages
    assert mail.tls and mail.auth_user == "alerts"
    msg = mail.message
    assert msg["To"] == "nurse@example.org"
    assert "enrollment.tpmt_unknown" in msg["Subject"]
    assert msg["Message-ID"].startswith("<alert-")
    assert "TPMT status not recorded" in msg.get_content()


async def test_transient_errors_are_retried_with_backoff_until_delivered(rig: Rig) -> None:
    enrol(rig)
    rig.twilio.queue_responses(429, 500, 503)
    rig.clock.set(START + timedelta(days=3))
    lab(rig, "P-1", alt=700)
    assert await rig.service.dispatch() == 1
    [d] = deliveries(rig)
    assert d.state == "pending" and d.next_attempt_at > rig.clock.now()
    assert await rig.service.dispatch() == 0  # not due yet: backoff holds
    await drain(rig, step=timedelta(minutes=1))
    [d] = deliveries(rig)
    assert d.state == "delivered"
    assert [t.outcome for t in attempts(rig)] == ["transient"] * 3 + ["delivered"]
    assert len(rig.twilio.messages) == 1


async def test_permanent_error_fails_over_and_tells_coordinators(rig: Rig) -> None:
    enrol(rig)
    rig.twilio.queue_responses(Reply.error(400, 21211, "invalid 'To' number"))
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=700)
    await drain(rig, step=timedelta(seconds=1))
    first = next(d for d in deliveries(rig) if d.purpose == "alert")
    assert first.state == "delivered" and first.channel_index == 1  # failed over to email
    to = sorted(m.message["To"] for m in rig.smtp.messages)
    assert to == ["coord@example.org", "oncall@example.org"]
    failure = next(a for a in alerts(rig) if a.rule == "delivery.failed")
    assert "21211" in failure.message and raised[0].code in failure.message
    outcomes = [(t.channel, t.outcome) for t in attempts(rig)]
    assert ("sms", "permanent") in outcomes and ("email", "delivered") in outcomes


async def test_a_hung_provider_does_not_block_other_sends(rig: Rig) -> None:
    enrol(rig)
    enrol(rig, "P-2", tpmt="unknown")
    rig.twilio.queue_responses(Reply.hanging(keep=True))
    rig.clock.set(START + timedelta(days=3))
    lab(rig, "P-1", alt=700)
    n = await rig.service.dispatch()
    assert n == 2  # the SMS (hangs) and the P-2 email went out in the same pass
    assert [m.message["To"] for m in rig.smtp.messages] == ["nurse@example.org"]
    sms_delivery = next(d for d in deliveries(rig) if d.recipient == "oncall")
    # The answer never came, but the message is at Twilio: settled by lookup, not resent.
    assert sms_delivery.state == "delivered"
    assert len(rig.twilio.messages) == 1


async def test_critical_escalates_after_15_minutes_until_acknowledged(rig: Rig) -> None:
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=700)
    await drain(rig)
    rig.clock.advance(timedelta(minutes=14))
    assert rig.service.escalate() == 0
    rig.clock.advance(timedelta(minutes=1))
    assert rig.service.escalate() == 1
    await drain(rig)
    assert [m.message["To"] for m in rig.smtp.messages] == ["nurse@example.org"]
    assert "ESCALATED" in rig.smtp.messages[0].message["Subject"]
    rig.clock.advance(timedelta(minutes=15))
    assert rig.service.escalate() == 1
    await drain(rig)
    assert rig.smtp.messages[-1].message["To"] == "coord@example.org"
    with session_scope(rig.service.engine) as s:
        acknowledge(s, raised[0].code, "Dr A", rig.clock.now())
    rig.clock.advance(timedelta(hours=2))
    assert rig.service.escalate() == 0
    await drain(rig)
    assert len(rig.smtp.messages) == 2
    lead = next(a for a in alerts(rig) if a.code == raised[0].code)
    assert lead.state == "acknowledged" and lead.acknowledged_by == "Dr A"
    assert lead.chain == ["oncall", "care_team", "coordinators"]


async def test_warnings_repeat_until_acknowledged(rig: Rig) -> None:
    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=40)
    assert [a.rule for a in raised] == ["warn.transaminase_elevated"]
    await drain(rig)
    rig.clock.advance(timedelta(hours=4))
    assert rig.service.escalate() == 1
    await drain(rig)
    assert len(rig.smtp.messages) == 2 and "REMINDER" in rig.smtp.messages[1].message["Subject"]
    with session_scope(rig.service.engine) as s:
        acknowledge(s, raised[0].code, "Nurse B", rig.clock.now())
    rig.clock.advance(timedelta(hours=8))
    assert rig.service.escalate() == 0


async def test_silence_holds_back_non_critical_but_never_critical(rig: Rig) -> None:
    from monitor.services.alerts import silence

    enrol(rig)
    with session_scope(rig.service.engine) as s:
        silence(
            s,
            "P-1",
            "in hospital, labs daily",
            START + timedelta(days=30),
            "Coord",
            rig.clock.now(),
        )
    rig.clock.set(START + timedelta(days=3))
    lab(rig, "P-1", alt=40)
    await drain(rig)
    assert rig.smtp.messages == []
    rig.clock.advance(timedelta(days=1))
    lab(rig, "P-1", alt=700)
    await drain(rig)
    assert len(rig.twilio.messages) == 1


async def test_quiet_hours_hold_back_info_but_never_critical(rig: Rig) -> None:
    from datetime import UTC, datetime

    text = rig.config_path.read_text() + (
        '\n[quiet_hours]\nstart = "21:00"\nend = "07:00"\ntimezone = "Europe/London"\n'
    )
    rig.config_path.write_text(text)
    assert rig.service.reload()
    night = datetime(2026, 3, 9, 22, 30, tzinfo=UTC)  # 22:30 in London (GMT in March)
    enrol(rig, start=night - timedelta(days=7, hours=1))
    rig.clock.set(night - timedelta(days=1))
    lab(rig, "P-1", alt=20)  # a normal panel after 6 days
    rig.clock.set(night)
    raised = rig.service.sweep()
    assert [a.rule for a in raised] == ["titration.escalation_due"]
    [held] = [d for d in deliveries(rig) if d.severity == "info"]
    assert held.next_attempt_at == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    lab(rig, "P-1", alt=900)
    critical = [d for d in deliveries(rig) if d.severity == "critical"]
    assert critical and critical[0].next_attempt_at == night


async def test_unknown_outcomes_count_towards_attempts_then_fail(rig: Rig) -> None:
    from tests.fakes.smtp_server import HANG

    text = rig.config_path.read_text()
    text = text.replace("max_attempts = 5", "max_attempts = 2").replace(
        "timeout_s = 2", "timeout_s = 0.3"
    )
    rig.config_path.write_text(text)
    assert rig.service.reload()
    rig.smtp.script("DATA", HANG, HANG)
    enrol(rig, tpmt="unknown")  # a warning for the nurse, by e-mail only
    await drain(rig, step=timedelta(minutes=5), rounds=6)
    nurse = next(d for d in deliveries(rig) if d.recipient == "nurse")
    assert nurse.state == "failed" and nurse.attempts == 2
    assert [t.outcome for t in attempts(rig) if t.delivery_id == nurse.id] == ["unknown"] * 2
    assert any(a.rule == "delivery.failed" for a in alerts(rig))


async def test_resolving_cancels_pending_escalations(rig: Rig) -> None:
    from monitor.services.alerts import resolve

    enrol(rig)
    rig.clock.set(START + timedelta(days=3))
    raised = lab(rig, "P-1", alt=700)
    await drain(rig)
    rig.clock.advance(timedelta(minutes=15))
    assert rig.service.escalate() == 1  # queued, not yet sent
    with session_scope(rig.service.engine) as s:
        resolve(s, raised[0].code, "Dr A", "stopped by phone", rig.clock.now())
    await drain(rig)
    escalation = next(d for d in deliveries(rig) if d.purpose == "escalation")
    assert escalation.state == "cancelled"
    assert rig.smtp.messages == []
    rig.clock.advance(timedelta(hours=1))
    assert rig.service.escalate() == 0
