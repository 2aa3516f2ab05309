"""A held value shows where a person looks: the patient page says a value waits (and
advises no dose step), the quarantine page names its patient and counts unmapped codes."""

from __future__ import annotations

from datetime import timedelta

from monitor.services.payloads import ingest_payload
from monitor.store.db import session_scope
from monitor.store.models import PatientIdentifierRow
from tests.web.conftest import NOW, Console, signed_in


def _hold_one(console: Console) -> None:
    ts = (NOW - timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    text = "\r".join(
        [
            f"MSH|^~\\&|LAB|HOSP|MON|HOSP|{ts}||ORU^R01|HV-1|P|2.5.1",
            "PID|1||300^^^HOSP^MR",
            f"OBR|1||O1|24325-3^Hepatic panel^LN|||{ts}",
            f"OBX|1|NM|1742-6^ALT^LN||25|U/L|||||F|||{ts}",
            f"OBX|2|NM|1975-2^Bilirubin^LN||9||||||F|||{ts}",
        ]
    )
    with session_scope(console.engine) as s:
        s.add(PatientIdentifierRow(patient_id="P-300", system="HOSP", value="300"))
    with session_scope(console.engine) as s:
        out = ingest_payload(
            s, text, "hl7", "mllp", NOW, console.host.config.protocols, console.host.config.routing
        )
    assert (out.stored, out.held) == (1, 1)


def test_the_patient_page_says_a_value_waits(console: Console) -> None:
    _hold_one(console)
    page = signed_in(console, "cora").get("/patients/P-300").text
    assert "Values waiting in quarantine" in page
    assert "no unit" in page
    assert "may step up" not in page


def test_the_quarantine_page_names_the_patient_of_a_held_value(console: Console) -> None:
    _hold_one(console)
    page = signed_in(console, "cora").get("/quarantine").text
    assert "one value of" in page and "/patients/P-300" in page
