"""The patient's SMS page: thread, consent, last reply; a coordinator pauses
reminders with a reason and an end date (CSRF-checked, audited)."""

from __future__ import annotations

from sqlmodel import select

from monitor.services.patient_contact import give_consent
from monitor.store.accounts import AuditRow
from monitor.store.db import session_scope
from monitor.store.models import PatientContactRow, PatientMessageRow
from monitor.web.audit import Actor
from tests.web.conftest import NOW, Console, post_form, signed_in

PAGE = "/patients/P-200/messages"


def _opt_in(console: Console) -> None:
    with session_scope(console.engine) as s:
        give_consent(
            s, Actor("t", None, "cli", None), "P-200", "+447700900123", "en", "Nurse J", NOW
        )
        s.add(PatientMessageRow(patient_id="P-200", direction="in", purpose="reply",
                                text="1 3", at=NOW, state="received"))  # fmt: skip


def test_thread_consent_and_last_reply_are_shown(console: Console) -> None:
    _opt_in(console)
    client = signed_in(console, "cora")
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "given" in page.text and "Nurse J" in page.text and "ends 0123" in page.text
    assert "+447700900123" not in page.text
    assert "1 3" in page.text and "from patient" in page.text
    assert 'href="/patients/P-200/messages"' in client.get("/patients/P-200").text


def test_a_coordinator_pauses_with_a_reason_and_end_date(console: Console) -> None:
    _opt_in(console)
    client = signed_in(console, "cora")
    r = post_form(client, PAGE, PAGE + "/pause", {"until": "2026-12-24", "reason": "holiday"})
    assert r.status_code == 303
    with session_scope(console.engine) as s:
        c = s.get(PatientContactRow, "P-200")
        assert c is not None and c.paused_until is not None and c.pause_reason == "holiday"
        [a] = list(s.exec(select(AuditRow).where(AuditRow.action == "patient.sms_paused")))
        assert a.actor == "cora" and a.patient_id == "P-200"
    assert "paused until" in client.get(PAGE).text
    r = post_form(client, PAGE, PAGE + "/pause", {"until": "", "reason": ""})
    with session_scope(console.engine) as s:
        c = s.get(PatientContactRow, "P-200")
        assert c is not None and c.paused_until is None


def test_a_pause_without_a_reason_or_token_is_refused(console: Console) -> None:
    _opt_in(console)
    client = signed_in(console, "cora")
    post_form(client, PAGE, PAGE + "/pause", {"until": "2026-12-24", "reason": ""})
    r = client.post(PAGE + "/pause", data={"until": "2026-12-24", "reason": "holiday"})
    assert r.status_code in (400, 403)
    with session_scope(console.engine) as s:
        c = s.get(PatientContactRow, "P-200")
        assert c is not None and c.paused_until is None
