"""A batch of stored messages is judged once per patient, before its commit; an
evaluation that fails keeps the stored results and makes the patient due now, so
the sweep judges it again (and raises system.evaluation_error if it still fails)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event
from sqlmodel import select

from monitor.services.deferred import evaluate_results
from monitor.services.payloads import ingest_payload, parse_payload, store_parsed
from monitor.services.writer import GroupWriter
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, EventRow, PatientRow
from tests.ingest.test_ingest import (
    MAPPING,
    NOW,
    PROTOCOLS,
    ROUTING,
    engine,
    enrol,
    hl7,
    lab_events,
)

__all__ = ["engine"]


def _alerts(engine) -> list[AlertRow]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return [a for a in s.exec(select(AlertRow)) if a.rule.startswith("stop.")]


def test_two_stop_messages_of_one_patient_in_a_batch_make_one_notification(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP|M1"], NOW - timedelta(days=10))
    enrol(engine, "P-2", ["HOSP|M2"], NOW - timedelta(days=10))
    payload = (
        hl7("A1", "M1", NOW - timedelta(days=2), alt=650)
        + hl7("A2", "M2", NOW - timedelta(days=2), alt=30)
        + hl7("A3", "M1", NOW - timedelta(days=1), alt=900)
    )
    evaluations: list[str] = []

    def seen(*args: object) -> None:
        if str(args[2]).startswith("SELECT engine_snapshots"):
            evaluations.append("x")

    event.listen(engine, "before_cursor_execute", seen)
    with session_scope(engine) as s:
        out = ingest_payload(s, payload, "hl7", "file:hl7", NOW, PROTOCOLS, ROUTING, MAPPING)
    event.remove(engine, "before_cursor_execute", seen)
    assert out.stored == 3
    assert len(evaluations) == 1, "the batch's patients are judged in one evaluation"
    stops = _alerts(engine)
    assert {a.patient_id for a in stops} == {"P-1"}
    assert {a.key for a in stops} >= {"lab:1", "lab:3"}, [(a.rule, a.key) for a in stops]
    assert len({a.group_id for a in stops}) == 1, "and one notification"
    assert {a.code for a in out.alerts} >= {a.code for a in stops}, "returned to the caller"


def test_a_failing_evaluation_keeps_the_results_and_makes_the_patient_due(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP|M1"], NOW - timedelta(days=10))
    with session_scope(engine) as s:  # a stored event the engine cannot read
        s.add(
            EventRow(
                patient_id="P-1",
                kind="lab",
                at=NOW - timedelta(days=5),
                recorded_at=NOW - timedelta(days=5),
                payload={"results": "not a mapping"},
            )
        )
        patient = s.get(PatientRow, "P-1")
        assert patient is not None
        patient.next_check_at = NOW + timedelta(days=3)

    def judge(session, results):  # type: ignore[no-untyped-def]
        stored = [r for out in results for r in out.results]
        evaluate_results(session, stored, NOW, PROTOCOLS, ROUTING)

    writer = GroupWriter(engine, before_commit=judge)  # as the daemon builds it
    parsed = parse_payload(hl7("B1", "M1", NOW - timedelta(days=1), alt=900), "hl7", MAPPING)

    def store(session):  # type: ignore[no-untyped-def]
        return store_parsed(session, parsed, "mllp", NOW, PROTOCOLS, ROUTING, evaluate=False)

    out = writer.submit(store)
    writer.stop()
    assert out.stored == 1, "stored (and so acknowledged) although it could not be judged"
    assert any(e.payload["results"] == {"alt": 900.0} for e in lab_events(engine))
    with session_scope(engine) as s:
        patient = s.get(PatientRow, "P-1")
        assert patient is not None and patient.next_check_at == NOW, "due now: the sweep retries"
    assert _alerts(engine) == []
