"""The triage desk: action order, counts, the refresh fragment, bulk acknowledge and
silence (one audit row per alert), and time to acknowledge."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

from sqlmodel import col, select

from monitor.store.accounts import AuditRow
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, SilenceRow
from monitor.web.triage import DeskRow, ack_stats, desk_order, span
from tests.web.conftest import NOW, Console, post_form, signed_in

CODES = re.compile(r'<tr class="desk-row[^"]*" data-code="(\w+)"')


def _row(code: str, severity: str, state: str, raised_h: float) -> DeskRow:
    raised = NOW - timedelta(hours=raised_h)
    return DeskRow(code, "P-1", "r", severity, state, "m", raised, None, NOW - raised, None, None)


def test_desk_order_unacknowledged_critical_then_warnings_then_the_rest() -> None:
    rows = [
        _row("ACKOLD", "critical", "acknowledged", 9),
        _row("INFO", "info", "open", 8),
        _row("WARNNEW", "warning", "open", 1),
        _row("ACKNEW", "critical", "acknowledged", 2),
        _row("CRITNEW", "critical", "open", 1),
        _row("WARNOLD", "warning", "open", 5),
        _row("CRITOLD", "critical", "open", 3),
    ]
    assert [r.code for r in desk_order(rows)] == [
        "CRITOLD",
        "CRITNEW",
        "WARNOLD",
        "WARNNEW",
        "INFO",
        "ACKNEW",
        "ACKOLD",
    ]


def _alerts(console: Console) -> list[AlertRow]:
    with session_scope(console.engine) as s:
        return list(s.exec(select(AlertRow).order_by(col(AlertRow.id))))


def test_front_page_is_the_desk_in_that_order_with_counts(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/")
    assert page.status_code == 200
    shown = CODES.findall(page.text)
    alerts = {a.code: a for a in _alerts(console)}
    assert set(shown) == {c for c, a in alerts.items() if a.state != "resolved"}
    bands = [(alerts[c].state != "open", alerts[c].severity != "critical") for c in shown]
    assert bands == sorted(bands)  # open critical first
    assert alerts[shown[0]].severity == "critical" and alerts[shown[0]].state == "open"
    n_crit_open = sum(1 for a in alerts.values() if a.severity == "critical" and a.state == "open")
    assert f'data-severity="critical" data-state="open">{n_crit_open}<' in page.text
    assert "Unacknowledged for" in page.text and 'src="/static/triage.js"' in page.text
    fragment = client.get("/triage/rows")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and CODES.findall(fragment.text) == shown


def test_desk_needs_sign_in(console: Console) -> None:
    assert console.client().get("/").status_code == 303
    assert console.client().get("/triage/rows").status_code == 303


def test_bulk_acknowledge_writes_one_audit_row_per_alert(console: Console) -> None:
    client = signed_in(console, "cora")
    open_codes = [a.code for a in _alerts(console) if a.state == "open"][:3]
    assert len(open_codes) >= 2
    console.clock.advance(timedelta(minutes=7))
    done = post_form(
        client,
        "/",
        "/triage/act",
        {"code": open_codes, "action": "acknowledge", "reason": "seen at huddle"},
    )
    assert done.status_code == 303
    after = {a.code: a for a in _alerts(console)}
    assert all(after[c].state == "acknowledged" for c in open_codes)
    assert all("seen at huddle" in (after[c].note or "") for c in open_codes)
    with session_scope(console.engine) as s:
        rows = s.exec(select(AuditRow).where(AuditRow.action == "alert.acknowledge")).all()
        assert sorted(r.alert_code or "" for r in rows) == sorted(open_codes)
        assert all(r.detail["reason"] == "seen at huddle" and r.actor == "cora" for r in rows)
    page = client.get("/").text
    assert "Acknowledged " + str(len(open_codes)) + " alert(s)" in page
    for code in open_codes:
        cell = re.search(rf'data-code="{code}".*?class="nowrap tta">([^<]*)<', page, re.S)
        assert cell and cell.group(1) != "-"


def test_bulk_action_needs_a_reason_and_the_csrf_token(console: Console) -> None:
    client = signed_in(console, "cora")
    code = next(a.code for a in _alerts(console) if a.state == "open")
    post_form(client, "/", "/triage/act", {"code": [code], "action": "acknowledge", "reason": ""})
    assert next(a for a in _alerts(console) if a.code == code).state == "open"
    refused = client.post(
        "/triage/act", data={"code": code, "action": "acknowledge", "reason": "x"}
    )
    assert refused.status_code == 403
    assert next(a for a in _alerts(console) if a.code == code).state == "open"


def test_bulk_silence_silences_each_patient_once_and_audits_each_alert(console: Console) -> None:
    client = signed_in(console, "cora")
    picked = [a for a in _alerts(console) if a.state == "open" and a.patient_id][:3]
    post_form(
        client,
        "/",
        "/triage/act",
        {
            "code": [a.code for a in picked],
            "action": "silence",
            "reason": "on holiday",
            "hours": "24",
        },
    )
    with session_scope(console.engine) as s:
        silences = s.exec(select(SilenceRow)).all()
        audits = s.exec(select(AuditRow).where(AuditRow.action == "alert.silence")).all()
    assert sorted(x.patient_id for x in silences) == sorted({a.patient_id for a in picked})
    assert all(x.reason == "on holiday" for x in silences)
    assert len(audits) == len(picked)


def test_median_time_to_acknowledge_on_the_health_page(console: Console) -> None:
    alerts = [a for a in _alerts(console) if a.state == "open"][:3]
    with session_scope(console.engine) as s:
        for a, minutes in zip(alerts, (10, 30, 90), strict=True):
            row = s.get(AlertRow, a.id)
            assert row is not None
            row.state, row.acknowledged_by = "acknowledged", "cora"
            raised = row.raised_at if row.raised_at.tzinfo else row.raised_at.replace(tzinfo=UTC)
            row.acknowledged_at = raised + timedelta(minutes=minutes)
            s.add(row)
    with session_scope(console.engine) as s:
        stats = ack_stats(s)
    assert stats.acknowledged == 3 and stats.median == timedelta(minutes=30)
    page = signed_in(console, "cora").get("/health").text
    assert 'id="median-tta">30 min<' in page


def test_span_reads_like_speech() -> None:
    assert span(timedelta(days=3, hours=4, minutes=5)) == "3 d 4 h"
    assert span(timedelta(hours=2, minutes=5)) == "2 h 5 min"
    assert span(timedelta(seconds=40)) == "40 s"
    assert span(None) == "-"
