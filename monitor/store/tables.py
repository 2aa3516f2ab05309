"""The tables behind the models, typed once, for the Core statements of the hot paths
(intake, batch evaluation, the dispatcher): one place instead of a `__table__` cast in
each module that builds statements."""

from __future__ import annotations

from sqlalchemy import Table

from monitor.store.models import (
    AlertRow,
    DeliveryAttemptRow,
    DeliveryRow,
    EngineSnapshotRow,
    EventRow,
    InboundMessageRow,
    PatientIdentifierRow,
    PatientRow,
    SilenceRow,
)

PATIENTS: Table = PatientRow.__table__  # type: ignore[attr-defined]
IDENTIFIERS: Table = PatientIdentifierRow.__table__  # type: ignore[attr-defined]
EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
INBOUND: Table = InboundMessageRow.__table__  # type: ignore[attr-defined]
SNAPSHOTS: Table = EngineSnapshotRow.__table__  # type: ignore[attr-defined]
ALERTS: Table = AlertRow.__table__  # type: ignore[attr-defined]
SILENCES: Table = SilenceRow.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = DeliveryRow.__table__  # type: ignore[attr-defined]
ATTEMPTS: Table = DeliveryAttemptRow.__table__  # type: ignore[attr-defined]
