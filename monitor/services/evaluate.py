"""Evaluate one patient: run the engine over the stored history, store new alerts.

Called in the same transaction as the data that caused it (intake) or by the
deadline sweep. Alerts are keyed by (patient, rule, key), so evaluating again finds
nothing new; the patient's `next_check_at` tells the sweep when time alone may
make a rule fire next.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from monitor.core.domain import Finding
from monitor.core.protocol import Protocol
from monitor.engine import Run, run
from monitor.routing import Routing
from monitor.services import snapshots
from monitor.services.outbox import enqueue
from monitor.services.records import event_rows, events_of, patient_of
from monitor.store.models import AlertRow, EventRow, PatientRow

log = structlog.get_logger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class UnknownPatient(LookupError):
    pass


def new_code(session: Session) -> str:
    """A short alert code a person can type in an SMS reply (`ACK K7Q2M`)."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
        if session.exec(select(AlertRow.id).where(AlertRow.code == code)).first() is None:
            return code


def new_codes(session: Session, n: int) -> list[str]:
    """`n` distinct alert codes, checked against the store in one query per round (a
    clash among a billion codes is rare; the unique index is the last word)."""
    codes: list[str] = []
    while len(codes) < n:
        fresh = {
            "".join(secrets.choice(CODE_ALPHABET) for _ in range(6)) for _ in range(n - len(codes))
        } - set(codes)
        taken = set(session.exec(select(AlertRow.code).where(col(AlertRow.code).in_(fresh))))
        codes += sorted(fresh - taken)
    return codes


def details_of(finding: Finding) -> dict[str, Any]:
    return {
        "values": dict(finding.values),
        "thresholds": dict(finding.thresholds),
        "grades": dict(finding.grades),
        "pattern": finding.pattern,
        "r_ratio": finding.r_ratio,
        "hys_law": finding.hys_law,
        "days_since_increase": finding.days_since_increase,
        "event_id": finding.event_id,
    }


_LOCKED = "monitor.locked_patients"


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_locks(session: OrmSession, *_: object) -> None:
    """Any rollback (a savepoint's too) may release row locks taken: take them again."""
    session.info.pop(_LOCKED, None)


@event.listens_for(OrmSession, "after_transaction_end")
def _transaction_ended(session: OrmSession, transaction: SessionTransaction) -> None:
    """The end of the outermost transaction releases every row lock."""
    if transaction.parent is None:
        session.info.pop(_LOCKED, None)


def lock_patient(session: Session, patient_id: str) -> PatientRow:
    """Load the patient row, locked where the database can (serialises evaluations);
    once per transaction (intake locks, then evaluation needs the same lock)."""
    locked: set[str] = session.info.setdefault(_LOCKED, set())
    if patient_id in locked:
        held = session.get(PatientRow, patient_id)
        if held is not None:
            return held
    row = session.exec(
        select(PatientRow).where(PatientRow.id == patient_id).with_for_update()
    ).first()
    if row is None:
        raise UnknownPatient(patient_id)
    locked.add(patient_id)
    return row


def counted(rows: list[EventRow], protocol: Protocol) -> list[EventRow]:
    """Preliminary results count only if the profile says so (a final one normally
    follows)."""
    if protocol.preliminary_results_count:
        return rows
    return [r for r in rows if not r.payload.get("preliminary", False)]


def run_for(
    session: Session,
    row: PatientRow,
    now: datetime,
    protocol: Protocol,
    history: list[EventRow] | None = None,
) -> Run:
    """The engine over the stored course from the start (`history`, when the caller
    has read it)."""
    rows = event_rows(session, row.id) if history is None else history
    return run(patient_of(row), events_of(counted(rows, protocol)), now, protocol)


def run_continued(
    session: Session, row: PatientRow, now: datetime, protocol: Protocol
) -> tuple[Run, list[EventRow]]:
    """The engine continued from the stored snapshot where it still fits the history,
    else from the start; the next snapshot is stored (the caller's transaction).
    Returns the run and the events it read: all of them, or those after the snapshot."""
    patient = patient_of(row)
    stored, snap = snapshots.load(session, patient, protocol)
    newer = None
    if stored is not None and snap is not None:
        newer = snapshots.continuation(session, stored, snap, now)
    if stored is not None and snap is not None and newer is not None:
        result = run(patient, events_of(counted(newer, protocol)), now, protocol, since=snap)
        if result.snapshot.state is not snap.state:
            covered = [r for r in newer if r.at <= result.snapshot.covers]
            fp = snapshots.fingerprint(covered, stored.fingerprint)
            snapshots.store(session, stored, row.id, result.snapshot, protocol, now, fp)
        return result, newer
    rows = event_rows(session, row.id)
    result = run(patient, events_of(counted(rows, protocol)), now, protocol)
    fp = snapshots.fingerprint(r for r in rows if r.at <= result.snapshot.covers)
    snapshots.store(session, stored, row.id, result.snapshot, protocol, now, fp)
    return result, rows


def evaluate_patient(
    session: Session,
    patient_id: str,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None = None,
) -> list[AlertRow]:
    """Store the alerts the patient's history calls for as of `now`, and their deliveries
    (same transaction); return the new alerts."""
    row = lock_patient(session, patient_id)
    protocol = protocols[row.protocol_id]
    # Read once, for the engine and the next check: every event after the snapshot
    # (all events when it replays), so every event dated after `now` is among them.
    result, history = run_continued(session, row, now, protocol)
    known = {
        (rule, key)
        for rule, key in session.exec(
            select(AlertRow.rule, AlertRow.key).where(AlertRow.patient_id == patient_id)
        )
    }
    group = uuid.uuid4().hex
    new: list[AlertRow] = []
    findings = [f for f in result.findings if (f.rule, f.key) not in known]
    for f, code in zip(findings, new_codes(session, len(findings)), strict=True):
        alert = AlertRow(
            code=code,
            patient_id=patient_id,
            rule=f.rule,
            severity=f.severity,
            key=f.key,
            at=f.at,
            raised_at=now,
            message=f.message,
            details=details_of(f),
            profile=f.profile,
            group_id=group,
        )
        session.add(alert)
        new.append(alert)
        log.info(
            "alert.raised",
            patient_id=patient_id,
            rule=f.rule,
            severity=f.severity,
            code=alert.code,
            at=f.at.isoformat(),
        )
    later = [e.at for e in history if e.at > now]
    candidates = [t for t in (result.position.next_check_at, min(later, default=None)) if t]
    # An event a little ahead of our clock is judged when its time comes.
    row.next_check_at = min(candidates, default=None)
    row.evaluated_at = now
    session.add(row)
    session.flush()
    enqueue(session, new, routing, now)
    return new


def due_patients(session: Session, now: datetime, limit: int = 500) -> list[str]:
    """Patients whose next check time has come: the sweep's work, via an index."""
    stmt = (
        select(PatientRow.id)
        .where(col(PatientRow.next_check_at).is_not(None), col(PatientRow.next_check_at) <= now)
        .order_by(col(PatientRow.next_check_at))
        .limit(limit)
    )
    return list(session.exec(stmt))
