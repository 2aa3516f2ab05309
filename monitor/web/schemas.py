"""What the console shows, as typed models: the pages render them and the API returns them.

One set of models for both is what makes "the API answers what the pages show"
true by construction. No model carries a patient's display name: only the
patient page shows it, straight from the patients table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlertOut(Out):
    code: str
    patient: str | None  # None for service-level alerts (daily quarantine count)
    rule: str
    severity: str
    state: str
    at: datetime
    raised_at: datetime
    message: str
    profile: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    note: str | None
    details: dict[str, Any]


class AlertListOut(Out):
    items: list[AlertOut]
    total: int
    page: int
    pages: int
    counts: dict[str, int]


class AttemptOut(Out):
    channel: str
    address: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    provider_id: str | None
    error: str | None


class DeliveryOut(Out):
    id: int
    recipient: str
    purpose: str
    step: int
    state: str
    channels: list[Any]
    attempts_made: int
    provider_id: str | None
    last_error: str | None
    created_at: datetime
    attempts: list[AttemptOut]


class EscalationOut(Out):
    route: str | None
    chain: list[str]
    step: int
    next_at: datetime | None


class AlertDetailOut(AlertOut):
    group: list[str]
    escalation: EscalationOut
    deliveries: list[DeliveryOut]


class PatientSummaryOut(Out):
    id: str
    protocol: str
    protocol_approved: bool
    on_therapy: bool
    phase: str
    day: int
    dose_mg: float | None
    max_dose_mg: float
    last_panel_at: datetime | None
    next_due: datetime | None
    overdue: bool
    escalation_allowed: bool
    escalation_reason: str
    open_alerts: int
    open_critical: int
    error: str | None = None


class EventOut(Out):
    id: int
    kind: str
    at: datetime
    recorded_at: datetime
    source: str
    recorded_by: str | None
    summary: str
    payload: dict[str, Any]


class LatestValueOut(Out):
    analyte: str
    value: float
    unit: str
    uln: float
    multiple_of_uln: float
    grade: int
    at: datetime


class WaitingValueOut(Out):
    """A value of this patient held in quarantine: the panel is not normal while it waits."""

    quarantine_id: int
    label: str
    at: datetime | None
    reason: str


class StopLineOut(Out):
    analytes: list[str]
    multiple_of_uln: float
    label: str
    symptomatic: bool


class PatientDetailOut(PatientSummaryOut):
    weight_kg: float
    start: datetime
    tpmt: str
    nudt15: str = "unknown"
    baseline: dict[str, float]
    uln: dict[str, float]
    identifiers: list[str]
    latest: list[LatestValueOut]
    waiting: list[WaitingValueOut] = []
    stop_lines: list[StopLineOut]
    events: list[EventOut]
    alerts: list[AlertOut]


class HealthOut(Out):
    scheduler_running: bool | None
    scheduler_here: bool
    last_sweep: datetime | None
    last_evaluation: datetime | None
    outbox_depth: int
    failed_deliveries: int
    quarantine_waiting: int
    unapproved_profiles: list[str]
