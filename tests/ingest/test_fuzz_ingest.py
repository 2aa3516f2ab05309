"""Fuzzing through the whole door: whatever arrives ends stored or quarantined."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from monitor.schemas import PatientIn
from monitor.services.intake import enroll
from monitor.services.payloads import ingest_payload
from monitor.store.db import create_all, make_engine, session_scope
from monitor.store.models import EventRow, InboundMessageRow, QuarantineRow
from tests.ingest.test_ingest import MAPPING, PROTOCOLS, SAMPLES, SETTINGS

HL7 = [p.read_bytes() for p in sorted((SAMPLES / "hl7").glob("*.hl7"))]
FHIR = [p.read_bytes() for p in sorted((SAMPLES / "fhir").glob("0[134]*.json"))]


def mutate(data: bytes, cut: int, insert: bytes, where: int) -> bytes:
    cut = cut % (len(data) + 1)
    where = where % (len(data) + 1)
    return data[:where] + insert + data[where + cut :]


payloads = st.one_of(
    st.binary(max_size=400).map(lambda b: ("hl7", b)),
    st.binary(max_size=400).map(lambda b: ("fhir", b)),
    st.binary(max_size=400).map(lambda b: ("csv", b)),
    st.tuples(
        st.sampled_from(HL7), st.integers(0, 50), st.binary(max_size=20), st.integers(0, 10_000)
    ).map(lambda t: ("hl7", mutate(*t))),
    st.tuples(
        st.sampled_from(FHIR), st.integers(0, 50), st.binary(max_size=20), st.integers(0, 10_000)
    ).map(lambda t: ("fhir", mutate(*t))),
)


@given(payloads)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_payload_ends_stored_or_quarantined(case: tuple[str, bytes]) -> None:
    fmt, payload = case
    engine = make_engine("sqlite://")
    create_all(engine)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    with session_scope(engine) as s:
        enroll(
            s,
            PatientIn.model_validate(
                {
                    "id": "P-1",
                    "weight_kg": 70,
                    "start": "2000-01-01T00:00:00Z",
                    "baseline": {"alt": 20, "ast": 20},
                    "tpmt": "normal",
                    "identifiers": ["MRENTR:11111111110", "374736473647364", "FHIR:Patient/pat2"],
                }
            ),
            now,
            PROTOCOLS,
            SETTINGS.default_protocol,
            None,
        )
    with session_scope(engine) as s:
        out = ingest_payload(
            s, payload, fmt, "fuzz", now, PROTOCOLS, None, MAPPING, whole=fmt == "csv"
        )
    with session_scope(engine) as s:
        quarantined = s.exec(select(func.count()).select_from(QuarantineRow)).one()
        stored = s.exec(select(func.count()).select_from(EventRow)).one()
        inbound = s.exec(select(InboundMessageRow)).all()
    engine.dispose()
    if out.quarantine_id is not None:
        assert quarantined == 1 and stored == 0
        return
    assert out.results, "a payload that parsed must yield at least one message"
    for result in out.results:
        assert result.outcome in ("stored", "quarantined")
        if result.outcome == "stored":
            assert result.events
    assert quarantined == out.quarantined + out.held
    assert stored == sum(len(r.events) for r in out.results)
    assert {m.outcome for m in inbound} <= {"stored", "quarantined"}
    assert len(inbound) == len({r.message_id for r in out.results})
