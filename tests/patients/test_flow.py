"""Patient SMS end to end on SQLite, through the real twilio library against the local
fake, with a pinned clock: the sweep writes, the sender sends, 21610 and STOP opt the
patient out, a symptom reply reaches the rules."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from monitor.services.intake import record_event
from monitor.services.patient_replies import handle_reply
from monitor.services.patient_sms import send_pending, sweep
from monitor.store.accounts import AuditRow
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, EventRow, PatientContactRow, PatientMessageRow
from tests.fakes.twilio_api import Reply
from tests.patients.conftest import MOBILE, START, World, enroll_patient

PHI = re.compile(r"P-00\d|ALT|azathioprine|\bmg\b|U/L|baseline", re.IGNORECASE)


async def tick(w: World, now: datetime) -> list[PatientMessageRow]:
    with session_scope(w.engine) as s:
        rows = sweep(s, now, w.table, w.protocols, w.config_dir, w.routing)
        s.expunge_all()
    await send_pending(w.engine, w.sms, now)
    return rows


def messages(w: World) -> list[PatientMessageRow]:
    with session_scope(w.engine) as s:
        rows = list(s.exec(select(PatientMessageRow).order_by(PatientMessageRow.id)))  # type: ignore[arg-type]
        s.expunge_all()
        return rows


async def test_reminder_recall_and_checkins_go_out_once_on_the_patients_schedule(
    world: World,
) -> None:
    w = world
    sent_days: list[tuple[int, str]] = []
    now = START
    while now < START + timedelta(days=16):
        for row in await tick(w, now):
            sent_days.append(((now - START).days, row.purpose))
        now += timedelta(hours=3)
    kinds = [k for _, k in sent_days]
    assert "reminder" in kinds and "recall" in kinds and "checkin" in kinds
    days = [d for d, _ in sent_days]
    assert len(days) == len(set(days))  # one a day
    out = [m for m in messages(w) if m.direction == "out"]
    assert len(w.api.messages) == len(out) and all(m.state == "sent" for m in out)
    assert {m.to for m in w.api.messages} == {MOBILE}
    for m in w.api.messages:
        assert not PHI.search(m.body), m.body
        assert "(ref " not in m.body  # the staff SMS's delivery reference is not appended
    first = w.api.messages[0].body
    assert first.startswith("Your blood test for the rheumatology clinic is due by ")


async def test_a_second_sweep_writes_nothing_twice(world: World) -> None:
    w = world
    now = START + timedelta(days=2, hours=2)
    first = await tick(w, now)
    again = await tick(w, now + timedelta(minutes=5))
    assert len(first) == 1 and again == []
    assert len(w.api.messages) == 1


async def test_twilio_21610_withdraws_consent_audited(world: World) -> None:
    w = world
    w.api.queue_responses(Reply.error(400, 21610))
    await tick(w, START + timedelta(days=2, hours=2))
    with session_scope(w.engine) as s:
        contact = s.get(PatientContactRow, "P-001")
        assert contact is not None and contact.consent == "withdrawn"
        audit = list(s.exec(select(AuditRow).where(AuditRow.action == "patient.sms_withdrawn")))
        assert [a.detail["how"] for a in audit] == ["twilio_21610"]
    assert messages(w)[0].state == "failed"
    assert await tick(w, START + timedelta(days=3, hours=2)) == []  # no more after opt-out


def reply(w: World, body: str, now: datetime, sender: str = MOBILE) -> str | None:
    with session_scope(w.engine) as s:
        return handle_reply(s, sender, body, now, w.protocols, w.routing, w.table, w.config_dir)


async def test_stop_reply_opts_out_and_start_opts_back_in(world: World) -> None:
    w = world
    now = START + timedelta(days=2, hours=2)
    answer = reply(w, " stop ", now)
    assert answer is not None and "no more messages" in answer
    assert await tick(w, now) == []
    answer = reply(w, "START", now + timedelta(hours=1))
    assert answer is not None and "again" in answer
    assert len(await tick(w, now + timedelta(hours=2))) == 1
    with session_scope(w.engine) as s:
        actions = [a.action for a in s.exec(select(AuditRow).where(AuditRow.patient_id == "P-001"))]
    assert actions[-2:] == ["patient.sms_withdrawn", "patient.sms_consent"]


def test_symptom_reply_triggers_the_symptomatic_stop_through_intake(world: World) -> None:
    w = world
    at = START + timedelta(days=9)
    with session_scope(w.engine) as s:
        record_event(s, "P-001", "lab", at, {"results": {"alt": 77.0, "ast": 30.0}, "units": {}},
                     at, w.protocols, routing=w.routing)  # fmt: skip
        before = {a.rule for a in s.exec(select(AlertRow))}
    assert "stop.transaminase_symptomatic" not in before
    answer = reply(w, "5", at + timedelta(hours=3))
    assert answer is not None and answer.startswith("Thank you")
    with session_scope(w.engine) as s:
        rules = {a.rule for a in s.exec(select(AlertRow))}
        [event] = list(s.exec(select(EventRow).where(EventRow.kind == "symptoms")))
    assert "stop.transaminase_symptomatic" in rules
    assert event.source == "patient_sms" and event.payload["symptoms"] == ["jaundice"]


def test_numbers_map_to_the_seed_symptoms(world: World) -> None:
    w = world
    reply(w, "1, 3", START + timedelta(days=2))
    reply(w, "0", START + timedelta(days=3))
    with session_scope(w.engine) as s:
        events = list(s.exec(select(EventRow).where(EventRow.kind == "symptoms")))
    assert [e.payload["symptoms"] for e in events] == [["fatigue", "vomiting"]]


def test_an_unclear_reply_gets_one_clarification_then_the_care_team(world: World) -> None:
    w = world
    now = START + timedelta(days=2)
    first = reply(w, "a bit tired maybe", now)
    assert first is not None and first.startswith("Sorry, we did not understand")
    with session_scope(w.engine) as s:
        assert list(s.exec(select(AlertRow).where(AlertRow.rule == "patient.unclear_reply"))) == []
    second = reply(w, "yes?", now + timedelta(minutes=10))
    assert second is not None and "call" in second
    with session_scope(w.engine) as s:
        [alert] = list(s.exec(select(AlertRow).where(AlertRow.rule == "patient.unclear_reply")))
        assert alert.patient_id == "P-001" and "a bit tired" not in alert.message
        assert not list(s.exec(select(EventRow).where(EventRow.kind == "symptoms")))


def test_a_reply_from_an_unregistered_number_is_stored_against_no_one(world: World) -> None:
    w = world
    assert reply(w, "5", START + timedelta(days=2), sender="+447700900999") is None
    assert reply(w, "5", START + timedelta(days=2), sender="07700900123") is None  # not E.164
    with session_scope(w.engine) as s:
        assert (
            list(s.exec(select(PatientMessageRow).where(PatientMessageRow.direction == "in"))) == []
        )
        assert not list(s.exec(select(EventRow).where(EventRow.kind == "symptoms")))


async def test_repeated_non_attendance_raises_an_alert_once(world: World) -> None:
    """Day 4's panel is missed (recall), a late one comes on day 6, the next (day 10)
    is missed too: two recalled deadlines, so one alert to the consultant's route."""
    w = world
    now = START
    while now < START + timedelta(days=20):
        if now == START + timedelta(days=6):
            with session_scope(w.engine) as s:
                record_event(s, "P-001", "lab", now, {"results": {"alt": 20.0, "ast": 20.0},
                             "units": {}}, now, w.protocols, routing=w.routing)  # fmt: skip
        await tick(w, now)
        now += timedelta(hours=3)
    with session_scope(w.engine) as s:
        rule = "lab.repeated_non_attendance"
        alerts = list(s.exec(select(AlertRow).where(AlertRow.rule == rule)))
        assert len(alerts) == 1 and alerts[0].patient_id == "P-001"
        assert alerts[0].details == {"missed_panels": 2}
    recalls = sorted(m.key or "" for m in messages(w) if m.purpose == "recall")
    assert [k.rsplit(":", 1)[1] for k in recalls] == ["2026-03-06", "2026-03-12"]


def test_second_patient_number_does_not_reach_the_first(world: World) -> None:
    w = world
    enroll_patient(w.engine, w.protocols, w.routing, "P-002", "+447700900456")
    reply(w, "2", START + timedelta(days=2), sender="+447700900456")
    with session_scope(w.engine) as s:
        [event] = list(s.exec(select(EventRow).where(EventRow.kind == "symptoms")))
    assert event.patient_id == "P-002"


@pytest.mark.parametrize("kept", [True, False], ids=["twilio-took-it", "twilio-never-did"])
async def test_a_send_with_no_answer_is_looked_up_before_any_resend(
    world: World, kept: bool
) -> None:
    """The create call times out: the message may or may not be at Twilio. The next
    pass asks Twilio first: a text it holds is settled as sent (never sent twice), one
    it never took is sent once more."""
    w = world
    w.api.queue_responses(Reply.hanging(keep=kept))
    now = START
    while not [m for m in messages(w) if m.direction == "out"]:
        await tick(w, now)
        now += timedelta(hours=3)
    [first] = [m for m in messages(w) if m.direction == "out"]
    assert first.state == "unknown"
    await send_pending(w.engine, w.sms, now)
    [after] = [m for m in messages(w) if m.direction == "out"]
    assert after.state == "sent"
    assert len(w.api.messages) == 1  # one text at Twilio either way
    creates = [r for r in w.api.requests if r.method == "POST"]
    assert len(creates) == (1 if kept else 2)


async def test_a_care_teams_patients_hear_their_own_clinic_and_number(world: World) -> None:
    """`[patient_sms.teams.ibd]`: an IBD patient's reminder names the IBD clinic and
    HELP answers with its number; a patient of no such team keeps the site's."""
    from monitor.config_schema import PatientSmsTeamTable
    from monitor.services.intake import set_care_team
    from monitor.services.patient_sms import render

    w = world
    w.table.teams["ibd"] = PatientSmsTeamTable(clinic="the IBD clinic", help_number="+441632960111")
    with session_scope(w.engine) as s:
        set_care_team(s, "P-001", "ibd", w.routing)
    now = START
    while not w.api.messages:
        await tick(w, now)
        now += timedelta(hours=3)
    assert "the IBD clinic" in w.api.messages[0].body
    with session_scope(w.engine) as s:
        contact = s.get(PatientContactRow, "P-001")
        assert contact is not None
        assert "+441632960111" in render(s, contact, "help", w.table, w.config_dir)
        set_care_team(s, "P-001", "rheumatology", w.routing)
    with session_scope(w.engine) as s:
        contact = s.get(PatientContactRow, "P-001")
        assert contact is not None
        assert "+441632960000" in render(s, contact, "help", w.table, w.config_dir)
