"""Intake: the one door through which patients and events enter the store.

Each call is one transaction with the evaluation it causes: the event and the
alerts it raises are committed together, or neither is. The CLI, replay, the
web console and every lab source come through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.identifiers import IdentifierError, parse_identifier, system_aliases
from monitor.routing import Routing
from monitor.schemas import PatientIn
from monitor.services.evaluate import evaluate_patient, lock_patient
from monitor.store.models import AlertRow, EventRow, PatientIdentifierRow, PatientRow

log = structlog.get_logger(__name__)


FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew between a lab system and us


class IntakeError(ValueError):
    """A request the store cannot take; the message names the problem."""


def check_team(team: str | None, routing: Routing | None) -> None:
    """A team must be one of the config's [teams]; without a routing, any name passes."""
    if team is None or routing is None or team in routing.teams:
        return
    known = ", ".join(sorted(routing.teams)) or "none configured"
    raise IntakeError(f"care_team: unknown team {team!r} (known: {known})")


def set_care_team(
    session: Session, patient_id: str, team: str | None, routing: Routing | None
) -> str | None:
    """Move a patient to another care team (None: none); returns the previous one.
    Alerts already raised keep the chain frozen onto them; new ones follow the team."""
    check_team(team, routing)
    row = session.get(PatientRow, patient_id)
    if row is None:
        raise IntakeError(f"patient: no patient {patient_id!r}")
    before = row.care_team
    row.care_team = team
    session.add(row)
    log.info("patient.care_team", patient_id=patient_id, team=team, before=before)
    return before


def enroll(
    session: Session,
    patient: PatientIn,
    now: datetime,
    protocols: Mapping[str, Protocol],
    default_protocol: str,
    routing: Routing | None = None,
) -> list[AlertRow]:
    protocol_id = patient.protocol or default_protocol
    if protocol_id not in protocols:
        raise IntakeError(
            f"protocol: unknown profile {protocol_id!r} (known: {', '.join(sorted(protocols))})"
        )
    if session.get(PatientRow, patient.id) is not None:
        raise IntakeError(f"id: patient {patient.id} is already enrolled")
    check_team(patient.care_team, routing)
    domain = patient.to_domain(protocols[protocol_id].dosing.start_dose_mg)
    session.add(
        PatientRow(
            id=domain.id,
            display_name=patient.name,
            weight_kg=domain.weight_kg,
            start=domain.start,
            start_dose_mg=domain.start_dose_mg,
            prior_toxic_dose_mg=domain.prior_toxic_dose_mg,
            tpmt=domain.tpmt,
            nudt15=domain.nudt15,
            baseline=dict(domain.baseline),
            uln=dict(domain.uln),
            protocol_id=protocol_id,
            enrolled_at=now,
            care_team=patient.care_team,
        )
    )
    session.flush()
    for ident in patient.identifiers:
        try:
            system, value = parse_identifier(ident)
        except IdentifierError as exc:
            raise IntakeError(f"identifiers: {exc}") from exc
        clash = session.exec(
            select(PatientIdentifierRow).where(
                col(PatientIdentifierRow.system).in_(system_aliases(system)),
                PatientIdentifierRow.value == value,
            )
        ).first()
        if clash is not None:
            raise IntakeError(f"identifiers: {ident} already belongs to patient {clash.patient_id}")
        session.add(PatientIdentifierRow(patient_id=patient.id, system=system, value=value))
    log.info("patient.enrolled", patient_id=patient.id, protocol=protocol_id)
    return evaluate_patient(session, patient.id, now, protocols, routing)


def time_problem(at: datetime, now: datetime, start: datetime) -> str | None:
    """Why an event cannot be taken at `at` (None when it can)."""
    if at > now + FUTURE_TOLERANCE:
        return (
            f"at: {at.isoformat()} is in the future (now {now.isoformat()}); a result "
            "cannot be judged before it is drawn: check the sender's clock and time zone"
        )
    if at < start:
        return f"at: {at.isoformat()} is before the patient's start ({start.isoformat()})"
    return None


def record_event(
    session: Session,
    patient_id: str,
    kind: str,
    at: datetime,
    payload: dict[str, Any],
    now: datetime,
    protocols: Mapping[str, Protocol],
    source: str = "cli",
    source_ref: str | None = None,
    recorded_by: str | None = None,
    routing: Routing | None = None,
    evaluate: bool = True,
    inbound_id: int | None = None,
) -> tuple[EventRow, list[AlertRow]]:
    """Store one event and evaluate the patient in the same transaction.

    `evaluate=False` is for callers that store several events of one message and
    evaluate once at the end (one notification per message)."""
    row = lock_patient(session, patient_id)
    problem = time_problem(at, now, row.start)
    if problem is not None:
        raise IntakeError(problem)
    event = EventRow(
        patient_id=patient_id,
        kind=kind,
        at=at,
        recorded_at=now,
        payload=payload,
        source=source,
        source_ref=source_ref,
        recorded_by=recorded_by,
        inbound_id=inbound_id,
    )
    session.add(event)
    session.flush()
    log.info("event.recorded", patient_id=patient_id, kind=kind, event_id=event.id, source=source)
    if not evaluate:
        return event, []
    return event, evaluate_patient(session, patient_id, now, protocols, routing)
