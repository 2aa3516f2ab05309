"""The pages: alert log and CSV, the alert and its actions, patients, the patient page and
the clinician's forms, quarantine, health, users; with the audit rows they write."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from sqlmodel import col, select

from monitor.services.payloads import ingest_payload
from monitor.store.accounts import AuditRow
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, EventRow, PatientRow, QuarantineRow
from monitor.web.alert_pages import _cell
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.web.conftest import NOW, SECRET_NAME, Console, post_form, signed_in

CODES = re.compile(r'data-code="(\w+)"')


def codes(html: str) -> list[str]:
    return CODES.findall(html)


def alert_of(console: Console, rule: str, patient: str | None = None) -> AlertRow:
    with session_scope(console.engine) as s:
        stmt = select(AlertRow).where(AlertRow.rule == rule)
        if patient:
            stmt = stmt.where(AlertRow.patient_id == patient)
        return s.exec(stmt).one()


def audit_rows(console: Console, action: str | None = None) -> list[AuditRow]:
    with session_scope(console.engine) as s:
        stmt = select(AuditRow).order_by(col(AuditRow.id))
        if action:
            stmt = stmt.where(AuditRow.action == action)
        return list(s.exec(stmt))


def test_alert_log_is_newest_first_with_filters_and_counts(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/alerts")
    with session_scope(console.engine) as s:
        newest_first = [
            a.code
            for a in s.exec(
                select(AlertRow).order_by(col(AlertRow.raised_at).desc(), col(AlertRow.id).desc())
            )
        ]
    assert codes(page.text) == newest_first and len(newest_first) == 5
    assert re.search(r'data-state="open">open <strong>5</strong>', page.text)

    critical = client.get("/alerts", params={"severity": "critical"})
    assert codes(critical.text) == [alert_of(console, "stop.transaminase").code]
    by_patient = client.get("/alerts", params={"patient": "P-300"})
    assert len(codes(by_patient.text)) == 2
    by_rule = client.get("/alerts", params={"rule": "warn.transaminase_elevated"})
    assert len(codes(by_rule.text)) == 2
    overdue = alert_of(console, "lab.overdue")
    day = overdue.raised_at.date()  # London is on GMT in March: the local day is the UTC day
    with session_scope(console.engine) as s:
        that_day = {a.code for a in s.exec(select(AlertRow)) if a.raised_at.date() == day}
    dated = client.get("/alerts", params={"from": day.isoformat(), "to": day.isoformat()})
    assert set(codes(dated.text)) == that_day and overdue.code in that_day
    later = client.get("/alerts", params={"from": (day + timedelta(days=1)).isoformat()})
    assert overdue.code not in codes(later.text)
    bad = client.get("/alerts", params={"from": "yesterday"})
    assert bad.status_code == 400 and "from: &#39;yesterday&#39; is not a date" in bad.text


def test_alert_log_pages(console: Console) -> None:
    app = create_app(console.host, WebSettings(page_size=2))
    from fastapi.testclient import TestClient

    client = TestClient(app, follow_redirects=False)
    from tests.web.conftest import login

    assert login(client, "cora").status_code == 303
    seen = [codes(client.get("/alerts", params={"page": n}).text) for n in (1, 2, 3)]
    assert [len(p) for p in seen] == [2, 2, 1]
    assert len({c for p in seen for c in p}) == 5
    assert "page 1 of 3" in client.get("/alerts").text
    assert "older &rarr;" in client.get("/alerts").text


def test_csv_export_is_exactly_the_filtered_log(console: Console) -> None:
    client = signed_in(console, "cora")
    params = {"state": "open", "severity": "warning"}
    shown = codes(client.get("/alerts", params=params).text)
    response = client.get("/alerts.csv", params=params)
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["code"] for r in rows] == shown and len(shown) == 3
    assert {r["severity"] for r in rows} == {"warning"}
    assert SECRET_NAME not in response.text
    [export] = audit_rows(console, "alerts.export")
    assert export.detail == {"filter": params, "rows": 3} and export.actor == "cora"


def test_csv_cells_are_not_formulas() -> None:
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("+1") == "'+1" and _cell("@x") == "'@x" and _cell("ALT 40") == "ALT 40"


def test_alert_page_shows_values_thresholds_escalation_and_delivery_attempts(
    console: Console,
) -> None:
    client = signed_in(console, "cora")
    alert = alert_of(console, "stop.transaminase")
    page = client.get(f"/alerts/{alert.code.lower()}")
    assert page.status_code == 200
    text = page.text
    assert "ALT 150 U/L is &gt;= 5x baseline (110 U/L)" in text
    # thresholds in words with units, values with units (not raw keys and bare numbers)
    assert 'data-key="alt_baseline_multiple_limit">ALT 5x baseline (110 U/L)</td>' in text
    assert "alt baseline multiple limit" not in text
    assert (
        '<td data-label="Analyte">ALT</td><td data-label="Value" class="nowrap value">150 U/L'
        in text
    )
    assert "µmol/L" in text  # bilirubin's unit as a reader writes it
    # the escalation chain names people, not group ids
    chain = text.split('<ol class="chain">')[1].split("</ol>")[0]
    assert "On-call clinician" in chain and ">oncall" not in chain
    assert "step 1 of 3: reached" in text
    assert "+00:00" in text and " GMT" not in text  # local times carry their offset
    assert "On-call clinician" in text and "console-" in text  # recipient and provider id
    assert "console: on-call clinician" in text  # the attempt's channel and address
    assert client.get("/alerts/NOSUCH").status_code == 404
    [view] = audit_rows(console, "alert.view")
    assert (view.patient_id, view.alert_code, view.ip) == ("P-100", alert.code, "testclient")


def test_acknowledge_resolve_and_note(console: Console) -> None:
    client = signed_in(console, "cora")
    alert = alert_of(console, "warn.transaminase_elevated", "P-200")
    url = f"/alerts/{alert.code}"
    done = post_form(client, url, f"{url}/acknowledge", {})
    assert done.status_code == 303 and done.headers["location"] == url
    page = client.get(url)
    assert 'id="alert-state">acknowledged' in page.text and "Acknowledged" in page.text
    assert alert.code in codes(client.get("/alerts", params={"state": "acknowledged"}).text)
    assert alert.code not in codes(client.get("/alerts", params={"state": "open"}).text)

    post_form(client, url, f"{url}/resolve", {"note": ""})
    assert "Write a note first." in client.get(url).text
    post_form(client, url, f"{url}/note", {"note": "phoned the ward"})
    post_form(client, url, f"{url}/resolve", {"note": "repeat LFTs normal"})
    page = client.get(url)
    assert 'id="alert-state">resolved' in page.text
    assert "cora: phoned the ward" in page.text and "cora: repeat LFTs normal" in page.text
    actions = [r.action for r in audit_rows(console) if r.alert_code == alert.code]
    assert actions.count("alert.acknowledge") == 1
    assert "alert.note" in actions and "alert.resolve" in actions
    with session_scope(console.engine) as s:
        row = s.get(AlertRow, alert.id)
        assert row is not None and row.acknowledged_by == "cora" and row.state == "resolved"


def test_patients_are_sorted_by_need(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/patients").text
    order = re.findall(r'data-patient="([\w-]+)"', page)
    assert order[0] == "P-100"  # an open critical alert first
    assert order[1] == "P-200"  # then overdue liver tests
    assert 'class="badge overdue"' in page and "1 critical" in page
    assert SECRET_NAME not in page
    assert audit_rows(console, "patients.list")[0].detail == {"count": 3}


def test_patient_page_has_the_chart_with_stop_lines_and_dose_steps(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/patients/P-100").text
    assert SECRET_NAME in page  # the one page that shows the name
    svg = ElementTree.fromstring(re.search(r"<svg.*?</svg>", page, re.S).group(0))  # type: ignore[union-attr]
    ns = {"s": "http://www.w3.org/2000/svg"}
    lines = svg.findall(".//s:g[@class='stop-line stop-line-always']", ns)
    multiples = {g.get("data-analytes"): float(g.get("data-multiple") or 0) for g in lines}
    assert multiples["alt"] == pytest.approx(110 / 33, abs=1e-3)  # 5x baseline 22, ULN 33
    assert multiples["ast"] == pytest.approx(100 / 32, abs=1e-3)
    assert multiples["bilirubin"] == pytest.approx(2.0)
    assert len(svg.findall(".//s:g[@class='stop-line stop-line-symptomatic']", ns)) == 2
    assert len(svg.findall(".//s:g[@class='series series-alt']/s:g[@class='point']", ns)) == 2
    assert svg.find(".//s:g[@class='dose-step dose-stop']", ns) is not None  # the stop alert
    assert "ALT 150, AST 90, ALP 95, bilirubin 12" in page
    [view] = audit_rows(console, "patient.view")
    assert (view.actor, view.patient_id, view.via) == ("cora", "P-100", "web")


def test_clinician_records_dose_stop_and_symptoms_through_intake(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[bool] = []
    monkeypatch.setattr(console.host, "wake_dispatcher", lambda: woken.append(True))
    client = signed_in(console, "clint")
    url = "/patients/P-300"
    dose = {"dose_mg": "100", "note": "step up", "at": "2026-03-12T08:00"}
    post_form(client, url, f"{url}/dose", dose)
    assert "Recorded dose event" in client.get(url).text
    symptoms = {"symptom": ["nausea", "fatigue"], "at": "2026-03-12T08:30"}
    post_form(client, url, f"{url}/symptoms", symptoms)
    post_form(client, url, f"{url}/stop", {"reason": "patient preference"})  # at: now
    with session_scope(console.engine) as s:
        events = s.exec(
            select(EventRow).where(EventRow.source == "web").order_by(col(EventRow.id))
        ).all()
        patient = s.get(PatientRow, "P-300")
    assert [e.kind for e in events] == ["dose", "symptoms", "stop"]
    assert {e.recorded_by for e in events} == {"clint"}
    assert events[0].payload == {"dose_mg": 100.0, "note": "step up"}
    assert events[1].payload["symptoms"] == ["fatigue", "nausea"]
    assert events[0].at.isoformat() == "2026-03-12T08:00:00+00:00"  # London is on GMT
    assert events[2].at == NOW
    assert patient is not None and patient.next_check_at is None  # stopped: nothing due
    assert len(woken) == 3
    recorded = audit_rows(console)
    assert [r.action for r in recorded if r.action.endswith(".record")] == [
        "dose.record",
        "symptoms.record",
        "stop.record",
    ]
    assert all(r.patient_id == "P-300" for r in recorded if r.action.endswith(".record"))
    assert "therapy stopped" in client.get(url).text


def test_bad_form_input_is_refused_with_the_field_named(console: Console) -> None:
    client = signed_in(console, "clint")
    url = "/patients/P-300"
    post_form(client, url, f"{url}/dose", {"dose_mg": "-5"})
    assert "Not recorded: dose_mg" in client.get(url).text
    post_form(client, url, f"{url}/symptoms", {})
    assert "Not recorded: symptoms" in client.get(url).text
    post_form(client, url, f"{url}/stop", {"reason": ""})
    assert "say why therapy is stopped" in client.get(url).text
    post_form(client, url, f"{url}/dose", {"dose_mg": "75", "at": "2020-01-01T00:00"})
    assert "before the patient&#39;s start" in client.get(url).text
    response = post_form(client, url, "/patients/NOPE/dose", {"dose_mg": "75"})
    assert response.status_code == 404
    with session_scope(console.engine) as s:
        assert s.exec(select(EventRow).where(EventRow.source == "web")).first() is None


def _quarantine(console: Console) -> int:
    with session_scope(console.engine) as s:
        out = ingest_payload(
            s,
            "MSH|this is not a lab result",
            "hl7",
            "mllp",
            NOW,
            console.host.config.protocols,
            console.host.config.routing,
        )
        [result] = out.results
        assert result.outcome == "quarantined" and result.quarantine_id is not None
        return result.quarantine_id


def test_quarantine_lists_what_waits_with_retry_and_discard(console: Console) -> None:
    row_id = _quarantine(console)
    cora = signed_in(console, "cora")
    page = cora.get("/quarantine").text
    assert f'data-id="{row_id}"' in page and "MSH|this is not" not in page  # raw not shown
    assert f"/quarantine/{row_id}/retry" in page  # the quarantine service offers retry
    assert f"/quarantine/{row_id}/discard" not in page  # a coordinator cannot discard
    post_form(cora, "/quarantine", f"/quarantine/{row_id}/retry", {})
    assert "still cannot be used" in cora.get("/quarantine").text

    clint = signed_in(console, "clint")
    post_form(clint, "/quarantine", f"/quarantine/{row_id}/discard", {"reason": ""})
    assert "Say why" in clint.get("/quarantine").text
    post_form(clint, "/quarantine", f"/quarantine/{row_id}/discard", {"reason": "test noise"})
    assert "Nothing waits in quarantine." in clint.get("/quarantine").text
    with session_scope(console.engine) as s:
        row = s.get(QuarantineRow, row_id)
        assert row is not None
        assert (row.state, row.resolved_by, row.resolution) == ("discarded", "clint", "test noise")
    assert [r.action for r in audit_rows(console) if r.action.startswith("quarantine.")] == [
        "quarantine.retry",
        "quarantine.discard",
    ]


def test_health_page(console: Console) -> None:
    _quarantine(console)
    page = signed_in(console, "cora").get("/health").text
    assert "not in this process" in page  # served by `monitor web`, not the daemon
    assert "0 pending or sending" in page
    assert "1 waiting" in page and "azathioprine-seed v1.0.0" in page


def test_admin_manages_users(console: Console) -> None:
    ada = signed_in(console, "ada")
    post_form(ada, "/users", "/users", {"username": "nina", "role": "clinician", "password": "x"})
    assert "password: at least 10 characters" in ada.get("/users").text
    post_form(
        ada,
        "/users",
        "/users",
        {"username": "Nina", "role": "clinician", "password": "a long enough one"},
    )
    assert "Added nina (clinician)." in ada.get("/users").text
    post_form(ada, "/users", "/users/nina/role", {"role": "coordinator"})
    post_form(ada, "/users", "/users/nina/disable", {})
    post_form(ada, "/users", "/users/ada/disable", {})
    assert "You cannot disable or demote yourself." in ada.get("/users").text
    actions = [(r.action, r.detail.get("user")) for r in audit_rows(console, None)]
    assert ("user.add", "nina") in actions and ("user.disable", "nina") in actions
    assert ("user.role", "nina") in actions
    audit_page = ada.get("/audit", params={"user": "ada"}).text
    assert "user.disable" in audit_page
