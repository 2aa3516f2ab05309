"""Search and paging: patient id prefix and identifier, any case, on the patients list
and the alert log; pages for both."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from monitor.schemas import PatientIn
from monitor.services.intake import enroll
from monitor.store.db import session_scope
from monitor.store.models import PatientIdentifierRow
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.web.conftest import T0, Console, login, signed_in

PATIENT_ROWS = re.compile(r'data-patient="([^"]+)"')
ALERT_ROWS = re.compile(r'<tr class="alert-row[^"]*" data-code="(\w+)"')


def _enroll(console: Console, pid: str, *identifiers: str) -> None:
    model = PatientIn.model_validate(
        {
            "id": pid,
            "weight_kg": 70,
            "start": T0.isoformat(),
            "tpmt": "normal",
            "baseline": {"alt": 22, "ast": 20, "alp": 70, "bilirubin": 8},
            "identifiers": list(identifiers),
        }
    )
    with session_scope(console.engine) as s:
        enroll(
            s,
            model,
            T0,
            console.host.config.protocols,
            "azathioprine-seed",
            console.host.config.routing,
        )


def test_patient_search_by_prefix_any_case_and_by_identifier(console: Console) -> None:
    _enroll(console, "P-005")
    _enroll(console, "P-050")
    _enroll(console, "Q-7", "MRN|RX44120")
    client = signed_in(console, "cora")

    def found(q: str) -> list[str]:
        page = client.get("/patients", params={"q": q})
        assert page.status_code == 200
        return sorted(PATIENT_ROWS.findall(page.text))

    assert found("P-00") == ["P-005"]
    assert found("p-005") == ["P-005"]
    assert found("p-0") == ["P-005", "P-050"]
    assert found("rx441") == ["Q-7"]  # an MRN, prefix, any case
    assert found("P-%") == []  # a LIKE wildcard is a character, not "anything"
    assert "No patient id or identifier starts with" in client.get("/patients?q=zz").text
    with session_scope(console.engine) as s:
        assert s.get(PatientIdentifierRow, 1) is not None


def test_alert_log_search_finds_the_patients_alerts_any_case(console: Console) -> None:
    _enroll(console, "Z-9", "MRN|AB123")
    with session_scope(console.engine) as s:
        s.add(PatientIdentifierRow(patient_id="P-100", system="MRN", value="MX-100"))
    client = signed_in(console, "cora")
    every = ALERT_ROWS.findall(client.get("/alerts").text)
    p100 = ALERT_ROWS.findall(client.get("/alerts", params={"patient": "P-100"}).text)
    assert p100 and set(p100) < set(every)
    assert ALERT_ROWS.findall(client.get("/alerts", params={"q": "p-10"}).text) == p100
    assert ALERT_ROWS.findall(client.get("/alerts", params={"q": "mx-1"}).text) == p100
    assert ALERT_ROWS.findall(client.get("/alerts", params={"q": "nobody"}).text) == []


def test_patients_list_pages(console: Console) -> None:
    for n in range(4):
        _enroll(console, f"P-90{n}")
    client = TestClient(create_app(console.host, WebSettings(page_size=3)), follow_redirects=False)
    assert login(client, "cora").status_code == 303
    seen = [
        PATIENT_ROWS.findall(client.get("/patients", params={"page": n}).text) for n in (1, 2, 3)
    ]
    assert [len(p) for p in seen] == [3, 3, 1]
    assert len({p for page in seen for p in page}) == 7
    assert "page 1 of 3 (7 patients)" in client.get("/patients").text
    searched = client.get("/patients", params={"q": "p-90", "page": 2}).text
    assert "page 2 of 2 (4 patients)" in searched and "q=p-90" in searched
