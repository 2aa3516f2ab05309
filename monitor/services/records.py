"""Rows to core objects: the store's view of a patient's course, for the engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session, col, select

from monitor.core.domain import Event, Patient
from monitor.schemas import event_from_payload
from monitor.store.models import EventRow


class EventLike(Protocol):
    """What the engine needs of a stored event: an `EventRow`, or a `StoredEvent`."""

    @property
    def id(self) -> int | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read with Core for many patients at once (no ORM object per row)."""

    id: int
    patient_id: str
    kind: str
    at: datetime
    payload: dict[str, Any]


def patient_of(row: Any) -> Patient:
    """The core's patient from a `PatientRow` or a Core row of `patients`."""
    return Patient(
        id=row.id,
        weight_kg=row.weight_kg,
        start=row.start,
        start_dose_mg=row.start_dose_mg,
        baseline={k: float(v) for k, v in row.baseline.items()},
        uln={k: float(v) for k, v in row.uln.items()},
        prior_toxic_dose_mg=row.prior_toxic_dose_mg,
        tpmt=row.tpmt,
        nudt15=row.nudt15,
    )


def event_rows(session: Session, patient_id: str) -> list[EventRow]:
    """The patient's current events (superseded ones left out), in time order."""
    stmt = (
        select(EventRow)
        .where(EventRow.patient_id == patient_id, col(EventRow.superseded_by).is_(None))
        .order_by(col(EventRow.at), col(EventRow.id))
    )
    return list(session.exec(stmt))


def events_of(rows: Sequence[EventLike]) -> list[Event]:
    return [event_from_payload(str(r.id), r.kind, r.at, r.payload) for r in rows]
