"""SQLModel tables: the database is the source of truth.

Patient names are optional and kept only in `patients.display_name`; nothing else
(alerts, logs, SMS) carries them. Every datetime column is aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

from monitor.store.types import UTCDateTime


def _dt(index: bool = False, nullable: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class PatientRow(SQLModel, table=True):
    __tablename__ = "patients"

    id: str = Field(primary_key=True, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    weight_kg: float
    start: datetime = _dt()
    start_dose_mg: float
    prior_toxic_dose_mg: float | None = None
    tpmt: str = Field(default="unknown", max_length=16)
    nudt15: str = Field(
        default="unknown", max_length=16, sa_column_kwargs={"server_default": "unknown"}
    )
    baseline: dict[str, Any] = _json()
    uln: dict[str, Any] = _json()
    protocol_id: str = Field(max_length=64)
    enrolled_at: datetime = _dt()
    next_check_at: datetime | None = _dt(index=True, nullable=True)
    evaluated_at: datetime | None = _dt(index=True, nullable=True)  # max() for /healthz
    # The care team ([teams.<id>] of monitor.toml) whose routes and rotas it follows.
    care_team: str | None = Field(default=None, max_length=64, index=True)


class PatientIdentifierRow(SQLModel, table=True):
    """External identifiers (MRN, NHS number...) by assigning authority, for ingestion."""

    __tablename__ = "patient_identifiers"
    __table_args__ = (UniqueConstraint("system", "value", name="uq_identifier_system_value"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patients.id", index=True, max_length=64)
    system: str = Field(max_length=200)
    value: str = Field(max_length=200)


class EventRow(SQLModel, table=True):
    """One thing that happened to a patient: lab result, symptoms, dose change, stop.

    `at` is when it happened (draw time for labs); `recorded_at` when we learnt it.
    A corrected lab result replaces the one it corrects by pointing `superseded_by`
    of the old row at the new one; superseded rows stay for the record.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_patient_at", "patient_id", "at"),
        UniqueConstraint("source", "source_ref", name="uq_event_source_ref"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patients.id", max_length=64)
    kind: str = Field(max_length=16)
    at: datetime = _dt()
    recorded_at: datetime = _dt()
    payload: dict[str, Any] = _json()
    source: str = Field(default="cli", max_length=32)
    source_ref: str | None = Field(default=None, max_length=200)
    recorded_by: str | None = Field(default=None, max_length=200)
    superseded_by: int | None = Field(default=None, foreign_key="events.id")
    # The inbound message (one sender's one message id) that stored this event: a
    # new version of that message replaces only the events of its own chain.
    inbound_id: int | None = Field(default=None, foreign_key="inbound_messages.id", index=True)


class AlertRow(SQLModel, table=True):
    """A finding the care team must hear about, written before anything is sent.

    (patient_id, rule, key) is the idempotency key: re-evaluating the same history
    never writes the same alert twice. Service-level alerts (the daily quarantine
    count) have no patient. `group_id` ties together the alerts of one
    evaluation of one patient, which go out as one notification.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("patient_id", "rule", "key", name="uq_alert_idempotency"),
        Index("ix_alerts_state_raised", "state", "raised_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=16)
    patient_id: str | None = Field(
        default=None, foreign_key="patients.id", index=True, max_length=64
    )
    rule: str = Field(max_length=64, index=True)
    severity: str = Field(max_length=16)
    key: str = Field(max_length=200)
    at: datetime = _dt()
    raised_at: datetime = _dt()
    message: str
    details: dict[str, Any] = _json()
    profile: str = Field(max_length=100)
    group_id: str = Field(max_length=40, index=True)
    state: str = Field(default="open", max_length=16)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    acknowledged_at: datetime | None = _dt(nullable=True)
    resolved_at: datetime | None = _dt(nullable=True)
    note: str | None = None
    # Escalation, frozen when the alert is raised; only the lead alert of a group holds it.
    route: str | None = Field(default=None, max_length=64)
    care_team: str | None = Field(default=None, max_length=64, index=True)  # frozen with it
    chain: list[Any] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    escalation_step: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_escalation_at: datetime | None = _dt(index=True, nullable=True)
    silenced_by: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("silences.id", name="fk_alerts_silenced_by")),
    )


class DeliveryRow(SQLModel, table=True):
    """One notification of one alert group to one recipient, with failover channels.

    pending -> sending -> sent -> delivered | failed. `channels` is the recipient's
    list of [channel, address] in order; `channel_index` the one in use. The text is
    composed once, when the delivery is created, so a resend says the same thing.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    group_id: str = Field(max_length=40, index=True)
    lead_alert_id: int = Field(foreign_key="alerts.id", index=True)
    patient_id: str | None = Field(default=None, max_length=64)
    purpose: str = Field(default="alert", max_length=24)
    step: int = 0
    recipient: str = Field(max_length=100)
    channels: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    channel_index: int = 0
    severity: str = Field(max_length=16)
    subject: str
    text: str
    body: str = ""
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _dt()
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_until: datetime | None = _dt(nullable=True)
    # set by the claim when it took over a lapsed claim (send may have happened)
    reclaimed: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    provider_id: str | None = Field(default=None, max_length=200)
    last_error: str | None = None
    created_at: datetime = _dt()
    updated_at: datetime = _dt()


class DeliveryAttemptRow(SQLModel, table=True):
    """Every try, kept: which channel, when, what the provider said."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="deliveries.id", index=True)
    channel: str = Field(max_length=64)
    address: str = Field(max_length=300)
    started_at: datetime = _dt()
    finished_at: datetime | None = _dt(nullable=True)
    outcome: str | None = Field(default=None, max_length=16)
    provider_id: str | None = Field(default=None, max_length=200)
    error: str | None = None
    worker: str | None = Field(default=None, max_length=100)


class SilenceRow(SQLModel, table=True):
    """A coordinator's silence of one patient's non-critical alerts, with a reason."""

    __tablename__ = "silences"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patients.id", index=True, max_length=64)
    reason: str
    created_by: str = Field(max_length=200)
    created_at: datetime = _dt()
    expires_at: datetime = _dt()
    cancelled_at: datetime | None = _dt(nullable=True)


class InboundMessageRow(SQLModel, table=True):
    """Every message a source received, raw, before anything is made of it.

    A message is known by (source, sender, message_id), compared as literals: a
    control id (MSH-10) is unique only per sending application, so the same id from
    another sender is another message. A repeat is answered but not stored twice.
    `outcome` says what became of it.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("source", "sender", "message_id", name="uq_inbound_sender_msgid"),
        Index("ix_inbound_source_received", "source", "received_at"),  # the feed watch
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    sender: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})
    message_id: str = Field(max_length=200)
    received_at: datetime = _dt()
    raw: str
    outcome: str = Field(default="stored", max_length=16)
    detail: dict[str, Any] = _json()


class QuarantineRow(SQLModel, table=True):
    """Input that could not be used, kept whole with the reason in plain words.

    `kind` is ``message`` (the whole message or payload waits) or ``value`` (one
    value of a stored message waits; `patient_id`, `label` and `code` say which,
    and the draw it belongs to is marked as waiting on it).
    """

    __tablename__ = "quarantine"
    __table_args__ = (
        Index("ix_quarantine_state_received", "state", "received_at"),
        Index("ix_quarantine_source_received", "source", "received_at"),  # the feed watch
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    format: str = Field(max_length=16)
    sender: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})
    message_id: str | None = Field(default=None, max_length=200)
    kind: str = Field(
        default="message", max_length=16, sa_column_kwargs={"server_default": "message"}
    )
    patient_id: str | None = Field(default=None, max_length=64, index=True)
    label: str | None = Field(default=None, max_length=200)
    code: str | None = Field(default=None, max_length=200)
    received_at: datetime = _dt()
    raw: str
    reason: str
    detail: dict[str, Any] = _json()
    state: str = Field(default="waiting", max_length=16)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = _dt(nullable=True)
    resolution: str | None = None


class SourceCursorRow(SQLModel, table=True):
    """Where a poller got to (FHIR `_lastUpdated`), so a restart neither skips nor repeats."""

    __tablename__ = "source_cursors"

    name: str = Field(primary_key=True, max_length=100)
    cursor: str
    updated_at: datetime = _dt()


class InstanceRow(SQLModel, table=True):
    """A running daemon and its lease: claims of one whose lease lapsed are freed."""

    __tablename__ = "instances"

    id: str = Field(primary_key=True, max_length=100)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = _dt()
    lease_until: datetime = _dt(index=True)


class EngineSnapshotRow(SQLModel, table=True):
    """A patient's engine state as of `covers_at` (monitor/engine.py `Snapshot`), so the
    next evaluation continues from it instead of replaying the whole history. Only a
    cache: deleting a row costs one full replay, never a finding."""

    __tablename__ = "engine_snapshots"

    patient_id: str = Field(
        sa_column=Column(
            String(64), ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True
        )
    )
    covers_at: datetime = _dt()
    # Profile id, version and a digest of every value: any change replays.
    profile_key: str = Field(max_length=200)
    # count:sum:max of the ids of the current events it covers (services/snapshots.py).
    fingerprint: str = Field(max_length=80)
    format: int
    state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = _dt()


class PatientContactRow(SQLModel, table=True):
    """A patient's own mobile and consent to SMS (issue 14): one row per patient.

    `consent` is given | withdrawn; who and when are kept beside it (and in the
    audit log). `paused_until` holds back reminders (holiday, admission).
    """

    __tablename__ = "patient_contacts"

    patient_id: str = Field(foreign_key="patients.id", primary_key=True, max_length=64)
    mobile: str = Field(max_length=16, index=True)  # E.164, validated at the edge
    language: str = Field(default="en", max_length=8)
    consent: str = Field(default="given", max_length=16)
    consent_by: str = Field(max_length=100)
    consent_at: datetime = _dt()
    paused_until: datetime | None = _dt(nullable=True)
    pause_reason: str | None = Field(default=None, max_length=200)
    unclear_replies: int = 0
    updated_at: datetime = _dt()


class PatientMessageRow(SQLModel, table=True):
    """One SMS to or from a patient. `key` (patient, purpose, due date) makes a
    scheduled message unique, so a sweep that runs twice writes it once."""

    __tablename__ = "patient_messages"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patients.id", index=True, max_length=64)
    direction: str = Field(max_length=4)  # out | in
    purpose: str = Field(max_length=24)  # reminder | recall | checkin | reply | clarify ...
    key: str | None = Field(default=None, max_length=120, unique=True, index=True)
    text: str
    at: datetime = _dt()
    state: str = Field(default="pending", max_length=16)  # pending | sent | failed | received
    provider_id: str | None = Field(default=None, max_length=200)
