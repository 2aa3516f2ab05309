"""A message is (source, sender, id), compared as literals: no result crossed between
senders or patients, every version answered (issue 8, point 1 and 4)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from monitor.store.db import session_scope
from monitor.store.models import EventRow, InboundMessageRow, QuarantineRow
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.daemon.conftest import Rig
from tests.daemon.helpers import enrol as rig_enrol
from tests.ingest.test_ingest import NOW, engine, enrol, hl7, ingest, lab_events

__all__ = ["engine"]

AT = NOW - timedelta(hours=2)
START = NOW - timedelta(days=30)


def _from(sender_app: str, text: str) -> str:
    return text.replace("MSH|^~\\&|LAB|HOSP|", f"MSH|^~\\&|{sender_app}|HOSP|", 1)


def _current(engine) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    return {
        e.patient_id: e.payload["results"] for e in lab_events(engine) if e.superseded_by is None
    }


@pytest.mark.parametrize("wild", ["%", "_", "M%", "M_1"])
def test_an_id_with_like_wildcards_never_supersedes_another_patients_result(
    engine,  # type: ignore[no-untyped-def]
    wild: str,
) -> None:
    enrol(engine, "P-1", ["HOSP:111"], START)
    enrol(engine, "P-2", ["HOSP:222"], START)
    assert ingest(engine, hl7("M11", "111", AT, alt=620), "hl7").stored == 1
    assert ingest(engine, hl7(wild, "222", AT, alt=30), "hl7").stored == 1
    again = ingest(engine, hl7(wild, "222", AT, alt=31), "hl7")  # a new version of `wild`
    assert again.stored == 1
    assert _current(engine) == {"P-1": {"alt": 620.0}, "P-2": {"alt": 31.0}}


def test_a_control_id_reused_by_another_sender_is_another_message(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    enrol(engine, "P-2", ["HOSP:222"], START)
    first = ingest(engine, _from("LAB1", hl7("100", "111", AT, alt=620)), "hl7")
    second = ingest(engine, _from("ANALYSER2", hl7("100", "222", AT, alt=30)), "hl7")
    assert (first.stored, second.stored, second.duplicates) == (1, 1, 0)
    assert _current(engine) == {"P-1": {"alt": 620.0}, "P-2": {"alt": 30.0}}
    with session_scope(engine) as s:
        senders = sorted(r.sender for r in s.exec(select(InboundMessageRow)))
    assert len(set(senders)) == 2 and all("HOSP" in x for x in senders)


def test_a_b_then_a_again_is_answered_and_b_stands(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    a, b = hl7("V1", "111", AT, alt=40), hl7("V1", "111", AT, alt=45)
    assert ingest(engine, a, "hl7").stored == 1
    assert ingest(engine, b, "hl7").stored == 1
    out = ingest(engine, a, "hl7")  # an interface engine replaying its queue
    assert (out.duplicates, out.stored, out.quarantined) == (1, 0, 0)
    assert "already replaced by a newer one" in out.results[0].notes[0]
    assert _current(engine) == {"P-1": {"alt": 45.0}}
    assert ingest(engine, b, "hl7").duplicates == 1


def test_a_new_version_naming_another_patient_is_held_and_the_first_stands(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    enrol(engine, "P-2", ["HOSP:222"], START)
    ingest(engine, hl7("X1", "111", AT, alt=620), "hl7")
    out = ingest(engine, hl7("X1", "222", AT, alt=30), "hl7")
    assert out.quarantined == 1
    assert "names another patient" in (out.results[0].reason or "")
    assert _current(engine) == {"P-1": {"alt": 620.0}}


def test_a_new_version_keeps_its_unchanged_draws(engine) -> None:  # type: ignore[no-untyped-def]
    """Two draws in one message; the new version changes one: both still stand."""
    enrol(engine, "P-1", ["HOSP:111"], START)
    earlier = AT - timedelta(days=2)
    one = hl7("D1", "111", earlier, alt=40)
    two = hl7("D1", "111", AT, alt=50).split("\r", 2)[2]  # its OBR + OBX only
    ingest(engine, one + two, "hl7")
    changed = hl7("D1", "111", AT, alt=55).split("\r", 2)[2]
    assert ingest(engine, one + changed, "hl7").stored == 1
    standing = sorted(
        (e.at, e.payload["results"]["alt"]) for e in lab_events(engine) if e.superseded_by is None
    )
    assert [v for _, v in standing] == [40.0, 55.0]


def test_long_ids_are_stored_and_two_long_ids_stay_two(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    long_a, long_b = "A" * 299 + "1", "A" * 299 + "2"
    assert ingest(engine, hl7(long_a, "111", AT, alt=40), "hl7").stored == 1
    assert ingest(engine, hl7(long_b, "111", AT - timedelta(hours=1), alt=41), "hl7").stored == 1
    with session_scope(engine) as s:
        ids = [r.message_id for r in s.exec(select(InboundMessageRow))]
    assert len(set(ids)) == 2 and all(len(i) <= 200 for i in ids)


def _observation(obs_id: str, value: float) -> bytes:
    return json.dumps(
        {
            "resourceType": "Observation",
            "id": obs_id,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
            "subject": {"reference": "Patient/pat2"},
            "effectiveDateTime": AT.isoformat(),
            "valueQuantity": {"value": value, "unit": "U/L"},
        },
        ensure_ascii=True,
    ).encode()


def test_a_lone_surrogate_in_a_fhir_id_is_stored_not_a_500(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["FHIR:Patient/pat2"], START)
    out = ingest(engine, _observation("\ud800bad", 40), "fhir")
    assert out.stored + out.quarantined >= 1
    with session_scope(engine) as s:
        ids = [r.message_id for r in s.exec(select(InboundMessageRow))]
        held = list(s.exec(select(QuarantineRow)))
    assert ids or held
    assert all("\\ud800" in i for i in ids)
    assert ingest(engine, _observation("\ud800bad", 40), "fhir").duplicates == 1


def test_events_know_their_inbound_message(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    ingest(engine, hl7("I1", "111", AT, alt=40), "hl7")
    with session_scope(engine) as s:
        inbound = s.exec(select(InboundMessageRow)).one()
        event = s.exec(select(EventRow).where(EventRow.kind == "lab")).one()
        assert event.inbound_id == inbound.id
        assert event.source_ref is not None and event.source_ref.startswith(f"m{inbound.id}@")


def test_a_fhir_subject_identifier_with_an_oid_matches_either_spelling(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["2.16.840.1.113883.2.1.4.1|9434765919"], START)
    body = json.loads(_observation("o-oid", 40))
    body["subject"] = {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.2.1.4.1", "value": "9434765919"}
    }
    assert ingest(engine, json.dumps(body).encode(), "fhir").stored == 1
    assert _current(engine) == {"P-1": {"alt": 40.0}}


def test_a_uri_system_enrolled_as_a_token_matches_a_fhir_subject(engine) -> None:  # type: ignore[no-untyped-def]
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    enrol(engine, "P-1", [f"{nhs}|9434765919"], START)
    body = json.loads(_observation("o-nhs", 41))
    body["subject"] = {"identifier": {"system": nhs, "value": "9434765919"}}
    assert ingest(engine, json.dumps(body).encode(), "fhir").stored == 1


def test_a_subject_referring_to_a_contained_patient_is_matched_by_its_identifiers(
    engine,  # type: ignore[no-untyped-def]
) -> None:
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    enrol(engine, "P-1", [f"{nhs}|9434765919"], START)
    body = json.loads(_observation("o-contained", 42))
    body["contained"] = [
        {
            "resourceType": "Patient",
            "id": "pat",
            "identifier": [{"system": nhs, "value": "9434765919"}],
        }
    ]
    body["subject"] = {"reference": "#pat"}
    assert ingest(engine, json.dumps(body).encode(), "fhir").stored == 1
    assert _current(engine) == {"P-1": {"alt": 42.0}}
    body["id"], body["subject"] = "o-missing", {"reference": "#nobody"}
    out = ingest(engine, json.dumps(body).encode(), "fhir")
    assert (out.stored, out.quarantined) == (0, 1)
    assert "names no resource contained" in (out.results[0].reason or "")


def test_fhir_a_b_then_a_again_is_answered_not_a_500(rig: Rig) -> None:
    at = rig.clock.now() - timedelta(hours=1)
    rig_enrol(rig, "P-FV", start=at - timedelta(days=5), identifiers=["FHIR:Patient/pat2"])
    client = TestClient(create_app(rig.service, WebSettings(fhir_push_allow_without_token=True)))

    def version(value: float) -> bytes:
        body = json.loads(_observation("o-ver", value))
        body["effectiveDateTime"] = at.isoformat()
        return json.dumps(body).encode()

    for value in (40, 45, 40):
        answer = client.post("/fhir/Observation", content=version(value))
        assert answer.status_code == 200, answer.text
    with session_scope(rig.service.engine) as s:
        standing = [
            e.payload["results"]
            for e in s.exec(select(EventRow).where(EventRow.patient_id == "P-FV"))
            if e.superseded_by is None and e.kind == "lab"
        ]
    assert standing == [{"alt": 45.0}]
