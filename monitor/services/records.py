"""Rows to core objects: the store's view of a patient's course, for the engine."""

from __future__ import annotations

from sqlmodel import Session, col, select

from monitor.core.domain import Event, Patient
from monitor.schemas import event_from_payload
from monitor.store.models import EventRow, PatientRow


def patient_of(row: PatientRow) -> Patient:
    return Patient(
        id=row.id,
        weight_kg=row.weight_kg,
        start=row.start,
        start_dose_mg=row.start_dose_mg,
        baseline={k: float(v) for k, v in row.baseline.items()},
        uln={k: float(v) for k, v in row.uln.items()},
        prior_toxic_dose_mg=row.prior_toxic_dose_mg,
        tpmt=row.tpmt,  # type: ignore[arg-type]
        nudt15=row.nudt15,  # type: ignore[arg-type]
    )


def event_rows(session: Session, patient_id: str) -> list[EventRow]:
    """The patient's current events (superseded ones left out), in time order."""
    stmt = (
        select(EventRow)
        .where(EventRow.patient_id == patient_id, col(EventRow.superseded_by).is_(None))
        .order_by(col(EventRow.at), col(EventRow.id))
    )
    return list(session.exec(stmt))


def events_of(rows: list[EventRow]) -> list[Event]:
    return [event_from_payload(str(r.id), r.kind, r.at, r.payload) for r in rows]
