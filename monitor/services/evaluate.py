"""Evaluate one patient: run the engine over the stored history, store new alerts.

Called in the same transaction as the data that caused it (intake) or by the
deadline sweep. Alerts are keyed by (patient, rule, key), so evaluating again finds
nothing new; the patient's `next_check_at` tells the sweep when time alone may
make a rule fire next.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy import bindparam, event
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from monitor.core.domain import Finding
from monitor.core.protocol import Protocol
from monitor.engine import Run, run
from monitor.routing import Routing
from monitor.services import histories, snapshots
from monitor.services.codes import fresh_codes
from monitor.services.evaluate_writes import Change, Draft, write
from monitor.services.histories import History
from monitor.services.records import EventLike, event_rows, events_of, patient_of
from monitor.store.models import AlertRow, EventRow, PatientRow
from monitor.store.tables import PATIENTS as _PATIENTS

log = structlog.get_logger(__name__)


class UnknownPatient(LookupError):
    pass


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


_LOCK = select(PatientRow).where(PatientRow.id == bindparam("patient_id")).with_for_update()


def lock_patient(session: Session, patient_id: str) -> PatientRow:
    """Load the patient row, locked where the database can (serialises evaluations);
    once per transaction (intake locks, then evaluation needs the same lock)."""
    # id -> the row, held here so the session's weak identity map keeps it (None:
    # locked by the batch evaluator, which reads with Core)
    locked: dict[str, PatientRow | None] = session.info.setdefault(_LOCKED, {})
    if patient_id in locked:
        held = locked[patient_id] or session.get(PatientRow, patient_id)
        if held is not None:
            locked[patient_id] = held
            return held
    row = session.exec(_LOCK, params={"patient_id": patient_id}).first()
    if row is None:
        raise UnknownPatient(patient_id)
    locked[patient_id] = row
    return row


class PatientFacts(typing.Protocol):
    """What intake reads of a patient: a Core row of three columns or the ORM row."""

    @property
    def id(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def care_team(self) -> str | None: ...


_INTAKE_LOCK = (
    sa.select(_PATIENTS.c.id, _PATIENTS.c.start, _PATIENTS.c.care_team)
    .where(_PATIENTS.c.id == bindparam("patient_id"))
    .with_for_update()
)


def lock_for_intake(session: Session, patient_id: str) -> PatientFacts:
    """`lock_patient` for intake, with Core and three columns: loading the whole ORM
    row (its JSON columns decoded) cost more than storing the message."""
    locked: dict[str, PatientRow | None] = session.info.setdefault(_LOCKED, {})
    held = locked.get(patient_id)
    if held is not None:
        return held
    row = session.execute(_INTAKE_LOCK, {"patient_id": patient_id}).first()
    if row is None:
        raise UnknownPatient(patient_id)
    locked.setdefault(patient_id, None)  # locked, read with Core
    return typing.cast(PatientFacts, row)


E = TypeVar("E", bound=EventLike)


def counted(rows: Sequence[E], protocol: Protocol) -> list[E]:
    """Preliminary results count only if the profile says so (a final one normally
    follows)."""
    if protocol.preliminary_results_count:
        return list(rows)
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


@dataclass
class Judged:
    """One patient's evaluation, before anything is written."""

    patient_id: str
    findings: list[Finding]
    next_check_at: datetime | None
    snapshot: dict[str, Any] | None  # the engine_snapshots row to write, if changed


@dataclass
class Evaluated:
    alerts: list[AlertRow]
    failed: dict[str, Exception]


def judge(
    h: History, now: datetime, known: set[tuple[str, str]], to_latest: bool = False
) -> Judged:
    """The engine over one patient's history (continued from its snapshot where it
    fits): the findings not stored yet, the next check, the next snapshot. Pure.

    `to_latest` stops at the patient's latest stored event instead of `now`: for a
    back-load that holds more of this patient's results further on, judging the gap
    up to `now` would call every test overdue that the rest of the file brings."""
    patient = patient_of(h.row)
    events = events_of(counted(h.events, h.protocol))
    until = now
    if to_latest:
        stored = [e.at for e in h.events if e.at <= now]
        if h.snap is not None:
            stored.append(h.snap.covers)
        until = max(stored, default=now)
    result = run(patient, events, until, h.protocol, since=h.snap)
    snapshot = None
    if h.snap is None or result.snapshot.state is not h.snap.state:
        covered = (e for e in h.events if e.at <= result.snapshot.covers)
        base = h.stored.fingerprint if h.snap is not None and h.stored is not None else "0:0:0"
        snapshot = {
            "patient_id": patient.id,
            "covers_at": result.snapshot.covers,
            "profile_key": snapshots.profile_key(h.protocol),
            "format": snapshots.FORMAT,
            "state": snapshots.encode(result.snapshot),
            "updated_at": now,
            "fingerprint": snapshots.fingerprint(covered, base),
        }
    later = [e.at for e in h.events if e.at > now]
    # An event a little ahead of our clock is judged when its time comes.
    candidates = [t for t in (result.position.next_check_at, min(later, default=None)) if t]
    findings = [f for f in result.findings if (f.rule, f.key) not in known]
    return Judged(patient.id, findings, min(candidates, default=None), snapshot)


def evaluate_patients(
    session: Session,
    patient_ids: Sequence[str],
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None = None,
    to_latest: Collection[str] = (),
) -> Evaluated:
    """Store the alerts each patient's history calls for as of `now` (as of their
    latest stored event for the patients in `to_latest`: see `judge`), and their
    deliveries (the caller's transaction), in a few statements for the whole list.
    A patient whose evaluation raises is left out, unchanged (its deadline stays
    due), and returned in `failed`; a failed write fails the whole call."""
    ids = list(dict.fromkeys(patient_ids))
    session.flush()  # Core reads below do not autoflush what the caller added
    found = histories.load(session, ids, protocols, now)
    locked: dict[str, PatientRow | None] = session.info.setdefault(_LOCKED, {})
    for pid in found:
        locked.setdefault(pid, None)
    known = histories.known_alerts(session, found)
    failed: dict[str, Exception] = {pid: UnknownPatient(pid) for pid in ids if pid not in found}
    judged: list[Judged] = []
    for pid, h in found.items():
        try:
            judged.append(judge(h, now, known.get(pid, set()), pid in to_latest))
        except Exception as exc:
            failed[pid] = exc
    codes = iter(fresh_codes(sum(len(j.findings) for j in judged)))
    groups: list[list[Draft]] = []
    for j in judged:
        group = uuid.uuid4().hex
        groups.append([_draft(j.patient_id, f, next(codes), now, group) for f in j.findings])
    changes = [Change(j.patient_id, j.next_check_at, j.snapshot) for j in judged]
    alerts = write(session, groups, changes, found, now, routing)
    return Evaluated(alerts, failed)


def _draft(patient_id: str, f: Finding, code: str, now: datetime, group: str) -> Draft:
    return Draft(
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


def evaluate_patient(
    session: Session,
    patient_id: str,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None = None,
) -> list[AlertRow]:
    """One patient (see `evaluate_patients`); its evaluation error is raised."""
    done = evaluate_patients(session, [patient_id], now, protocols, routing)
    if patient_id in done.failed:
        raise done.failed[patient_id]
    return done.alerts


def due_patients(session: Session, now: datetime, limit: int = 500) -> list[str]:
    """Patients whose next check time has come: the sweep's work, via an index."""
    stmt = (
        select(PatientRow.id)
        .where(col(PatientRow.next_check_at).is_not(None), col(PatientRow.next_check_at) <= now)
        .order_by(col(PatientRow.next_check_at))
        .limit(limit)
    )
    return list(session.exec(stmt))
