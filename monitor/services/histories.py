"""Many patients' evaluation inputs in a handful of statements, not a dozen each.

The sweep judges hundreds of due patients and the group writer every patient of a
batch of messages; reading each one's row, snapshot and events on its own cost
about a dozen ORM statements per patient. Here each read is one Core statement for
the whole list: the patient rows (locked, in id order, where the database can),
their snapshots, the fingerprint of what each snapshot covers, the events after it
(or the whole history where it no longer fits), the alerts already stored, and
the silences in force. The rules for when a snapshot fits are the ones in
`services/snapshots.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Row
from sqlmodel import Session

from monitor.core.protocol import Protocol
from monitor.engine import Snapshot
from monitor.services import snapshots
from monitor.services.records import StoredEvent, patient_of
from monitor.store.models import (
    AlertRow,
    EngineSnapshotRow,
    EventRow,
    PatientRow,
    SilenceRow,
)

PATIENTS: Table = PatientRow.__table__  # type: ignore[attr-defined]
EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
SNAPSHOTS: Table = EngineSnapshotRow.__table__  # type: ignore[attr-defined]
ALERTS: Table = AlertRow.__table__  # type: ignore[attr-defined]
SILENCES: Table = SilenceRow.__table__  # type: ignore[attr-defined]


@dataclass
class History:
    """One patient's inputs: `events` are those after `snap` when it continues,
    else the whole current history (and `snap` is None)."""

    row: Row[Any]
    protocol: Protocol
    stored: Row[Any] | None  # the snapshot row, to be replaced
    snap: Snapshot | None
    events: list[StoredEvent] = field(default_factory=list)


def load(
    session: Session, ids: Sequence[str], protocols: Mapping[str, Protocol], until: datetime
) -> dict[str, History]:
    """The histories of `ids` (missing ones are not enrolled), rows locked."""
    stmt = select(PATIENTS).where(PATIENTS.c.id.in_(ids)).order_by(PATIENTS.c.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=PATIENTS)
    out: dict[str, History] = {
        row.id: History(row, protocols[row.protocol_id], None, None)
        for row in session.execute(stmt)
    }
    for stored in session.execute(select(SNAPSHOTS).where(SNAPSHOTS.c.patient_id.in_(list(out)))):
        h = out[stored.patient_id]
        h.stored = stored
        snap = snapshots.decode(stored, patient_of(h.row), h.protocol)
        if snap is not None and until >= snap.covers:
            h.snap = snap
    _check_fingerprints(session, out)
    going_on = [pid for pid, h in out.items() if h.snap is not None]
    replays = [pid for pid, h in out.items() if h.snap is None]
    if going_on:
        join = EVENTS.join(SNAPSHOTS, SNAPSHOTS.c.patient_id == EVENTS.c.patient_id)
        _read_events(
            session,
            out,
            select(*_EVENT_COLUMNS)
            .select_from(join)
            .where(EVENTS.c.patient_id.in_(going_on), EVENTS.c.at > SNAPSHOTS.c.covers_at),
        )
    if replays:
        _read_events(
            session, out, select(*_EVENT_COLUMNS).where(EVENTS.c.patient_id.in_(replays))
        )
    return out


_EVENT_COLUMNS = (EVENTS.c.id, EVENTS.c.patient_id, EVENTS.c.kind, EVENTS.c.at, EVENTS.c.payload)


def _check_fingerprints(session: Session, out: dict[str, History]) -> None:
    """A snapshot continues only while the events it covers are exactly those it saw:
    one grouped aggregate for every patient that has one."""
    going_on = [pid for pid, h in out.items() if h.snap is not None]
    if not going_on:
        return
    join = EVENTS.join(SNAPSHOTS, SNAPSHOTS.c.patient_id == EVENTS.c.patient_id)
    stmt = (
        select(
            EVENTS.c.patient_id,
            func.count(),
            func.coalesce(func.sum(EVENTS.c.id), 0),
            func.coalesce(func.max(EVENTS.c.id), 0),
        )
        .select_from(join)
        .where(
            EVENTS.c.patient_id.in_(going_on),
            EVENTS.c.superseded_by.is_(None),
            EVENTS.c.at <= SNAPSHOTS.c.covers_at,
        )
        .group_by(EVENTS.c.patient_id)
    )
    found = {pid: f"{n}:{total}:{top}" for pid, n, total, top in session.execute(stmt)}
    for pid in going_on:
        h = out[pid]
        assert h.stored is not None
        if found.get(pid, "0:0:0") != h.stored.fingerprint:
            h.snap = None


def _read_events(session: Session, out: dict[str, History], stmt: Any) -> None:
    stmt = stmt.where(EVENTS.c.superseded_by.is_(None)).order_by(
        EVENTS.c.patient_id, EVENTS.c.at, EVENTS.c.id
    )
    for r in session.execute(stmt):
        out[r.patient_id].events.append(StoredEvent(r.id, r.patient_id, r.kind, r.at, r.payload))


def known_alerts(session: Session, ids: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
    """(rule, key) of every alert stored per patient: what is not raised again."""
    out: dict[str, set[tuple[str, str]]] = {}
    stmt = select(ALERTS.c.patient_id, ALERTS.c.rule, ALERTS.c.key).where(
        ALERTS.c.patient_id.in_(list(ids))
    )
    for pid, rule, key in session.execute(stmt):
        out.setdefault(pid, set()).add((rule, key))
    return out


def silences(session: Session, ids: Iterable[str], now: datetime) -> dict[str, int]:
    """The silence in force per patient (the one that lasts longest)."""
    stmt = (
        select(SILENCES.c.patient_id, SILENCES.c.id)
        .where(
            SILENCES.c.patient_id.in_(list(ids)),
            SILENCES.c.cancelled_at.is_(None),
            SILENCES.c.expires_at > now,
        )
        .order_by(SILENCES.c.expires_at)
    )
    return {pid: sid for pid, sid in session.execute(stmt)}  # the last (longest) wins
