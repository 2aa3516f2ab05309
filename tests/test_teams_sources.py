"""A patient's care team from its lab feed: HL7 PV1-3.1 (point of care) and FHIR
Observation.performer (Organization or CareTeam), mapped through [teams.X] sources;
the team a clinician set is never overridden."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from monitor.routing import parse_routing
from monitor.schemas import PatientIn
from monitor.services.intake import enroll
from monitor.services.payloads import ingest_payload
from monitor.settings import load_settings
from monitor.sources import load_mapping
from monitor.sources.fhir import parse_fhir
from monitor.sources.hl7v2 import parse_message
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, PatientRow
from tests.helpers import CONFIG

NOW = datetime(2026, 1, 13, 12, 0, tzinfo=UTC)  # dr_baker's week on the rheumatology rota
SETTINGS = load_settings(CONFIG)
PROTOCOLS = SETTINGS.protocols()
ROUTING = parse_routing(SETTINGS.raw)
MAPPING = load_mapping()


def hl7(msg_id: str, mrn: str, pv1: str | None, alt: float) -> str:
    ts = (NOW - timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    segs = [
        f"MSH|^~\\&|LAB|HOSP|MONITOR|HOSP|{ts}||ORU^R01|{msg_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
    ]
    if pv1 is not None:
        segs.append(f"PV1|1|O|{pv1}")
    segs += [
        f"OBR|1||ORD-{msg_id}|24325-3^Hepatic panel^LN|||{ts}",
        f"OBX|1|NM|1742-6^ALT^LN||{alt}|U/L|||||F|||{ts}",
    ]
    return "\r".join(segs) + "\r"


def fhir(mrn: str, performer: str) -> str:
    at = (NOW - timedelta(hours=1)).isoformat()
    return json.dumps(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
            "subject": {"identifier": {"system": "HOSP", "value": mrn}},
            "effectiveDateTime": at,
            "performer": [{"reference": "Practitioner/p1"}, {"reference": performer}],
            "valueQuantity": {"value": 900, "unit": "U/L", "code": "U/L"},
        }
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'teams.db'}")
    upgrade(e)
    yield e
    e.dispose()


def enrol(engine: Engine, pid: str, mrn: str, team: str | None = None) -> None:
    start = NOW - timedelta(days=3)
    model = PatientIn.model_validate(
        {
            "id": pid,
            "weight_kg": 70,
            "start": start.isoformat(),
            "tpmt": "normal",
            "baseline": {"alt": 20, "ast": 20},
            "identifiers": [f"HOSP:{mrn}"],
            "care_team": team,
        }
    )
    with session_scope(engine) as s:
        enroll(s, model, start, PROTOCOLS, SETTINGS.default_protocol, ROUTING)


def ingest(engine: Engine, payload: str, fmt: str) -> None:
    with session_scope(engine) as s:
        out = ingest_payload(
            s, payload, fmt, fmt, NOW, PROTOCOLS, ROUTING, MAPPING, source_name="test"
        )
        assert out.stored == 1, [r.reason for r in out.results]


def team_and_route(engine: Engine, pid: str) -> tuple[str | None, list[str | None]]:
    with session_scope(engine) as s:
        patient = s.get(PatientRow, pid)
        assert patient is not None
        alerts = s.exec(select(AlertRow).where(AlertRow.patient_id == pid)).all()
        return patient.care_team, sorted({a.route for a in alerts if a.chain})


def test_the_parsers_read_where_the_patient_is_cared_for() -> None:
    assert parse_message(hl7("M1", "1", "RHEUM^^^HOSP", 30)).care_source == "RHEUM"
    assert parse_message(hl7("M2", "1", None, 30)).care_source is None
    [msg] = parse_fhir(fhir("1", "https://fhir.example.org/R4/CareTeam/ibd"))
    assert msg.care_source == "CareTeam/ibd"


def test_hl7_point_of_care_puts_a_patient_in_a_team_before_its_alerts_route(
    engine: Engine,
) -> None:
    enrol(engine, "P-H", "111")
    ingest(engine, hl7("M1", "111", "rheum^^^HOSP", 900), "hl7")
    team, routes = team_and_route(engine, "P-H")
    assert team == "rheumatology" and "rheumatology/critical" in routes


def test_fhir_performer_care_team_is_mapped(engine: Engine) -> None:
    enrol(engine, "P-F", "222")
    ingest(engine, fhir("222", "CareTeam/ibd"), "fhir")
    team, routes = team_and_route(engine, "P-F")
    assert team == "ibd" and "ibd/critical" in routes


def test_a_team_already_set_is_not_overridden_and_unknown_values_change_nothing(
    engine: Engine,
) -> None:
    enrol(engine, "P-K", "333", team="ibd")
    ingest(engine, hl7("M1", "333", "RHEUM", 30), "hl7")
    assert team_and_route(engine, "P-K")[0] == "ibd"
    enrol(engine, "P-U", "444")
    ingest(engine, hl7("M2", "444", "DERM", 30), "hl7")
    assert team_and_route(engine, "P-U")[0] is None
