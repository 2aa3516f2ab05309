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

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlmodel import Session

from monitor.core.protocol import Protocol
from monitor.engine import Snapshot
from monitor.services import snapshots
from monitor.services.records import StoredEvent, patient_of
from monitor.store.tables import ALERTS, EVENTS, PATIENTS, SILENCES, SNAPSHOTS


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
    pg = on_postgres(session)
    out: dict[str, History] = {
        row.id: History(row, protocols[row.protocol_id], None, None)
        for row in session.execute(_PATIENTS_LOCKED if pg else _PATIENTS[pg], {"ids": list(ids)})
    }
    for stored in session.execute(_SNAPSHOTS[pg], {"ids": list(out)}):
        h = out[stored.patient_id]
        h.stored = stored
        snap = snapshots.decode(stored, patient_of(h.row), h.protocol)
        if snap is not None and until >= snap.covers:
            h.snap = snap
    _check_fingerprints(session, out, pg)
    going_on = [pid for pid, h in out.items() if h.snap is not None]
    replays = [pid for pid, h in out.items() if h.snap is None]
    if going_on:
        _read_events(session, out, _NEWER_EVENTS[pg], going_on)
    if replays:
        _read_events(session, out, _ALL_EVENTS[pg], replays)
    return out


def _in(column: Any, pg: bool) -> Any:
    """`column` in the `ids` list. SQLite: an expanding IN. PostgreSQL: `= ANY` of one
    array parameter, a fixed query text psycopg converts once; an expanding list is a
    new, long text for each list length, converted again on every execution (~13% of
    a PostgreSQL sweep)."""
    if pg:
        return column == any_(bindparam("ids", type_=ARRAY(String())))
    return column.in_(bindparam("ids", expanding=True))


def on_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# Built once per dialect: building a statement costs more than running it.
_BY_SNAPSHOT = EVENTS.join(SNAPSHOTS, SNAPSHOTS.c.patient_id == EVENTS.c.patient_id)
_EVENT_COLUMNS = (EVENTS.c.id, EVENTS.c.patient_id, EVENTS.c.kind, EVENTS.c.at, EVENTS.c.payload)
_ORDER = (EVENTS.c.patient_id, EVENTS.c.at, EVENTS.c.id)
_CURRENT = EVENTS.c.superseded_by.is_(None)
_BOTH = (False, True)
_PATIENTS = {
    pg: select(PATIENTS).where(_in(PATIENTS.c.id, pg)).order_by(PATIENTS.c.id) for pg in _BOTH
}
_PATIENTS_LOCKED = _PATIENTS[True].with_for_update(of=PATIENTS)
_SNAPSHOTS = {pg: select(SNAPSHOTS).where(_in(SNAPSHOTS.c.patient_id, pg)) for pg in _BOTH}
_NEWER_EVENTS = {
    pg: select(*_EVENT_COLUMNS)
    .select_from(_BY_SNAPSHOT)
    .where(_in(EVENTS.c.patient_id, pg), _CURRENT, EVENTS.c.at > SNAPSHOTS.c.covers_at)
    .order_by(*_ORDER)
    for pg in _BOTH
}
_ALL_EVENTS = {
    pg: select(*_EVENT_COLUMNS).where(_in(EVENTS.c.patient_id, pg), _CURRENT).order_by(*_ORDER)
    for pg in _BOTH
}
_COVERED = {
    pg: select(
        EVENTS.c.patient_id,
        func.count(),
        func.coalesce(func.sum(EVENTS.c.id), 0),
        func.coalesce(func.max(EVENTS.c.id), 0),
    )
    .select_from(_BY_SNAPSHOT)
    .where(_in(EVENTS.c.patient_id, pg), _CURRENT, EVENTS.c.at <= SNAPSHOTS.c.covers_at)
    .group_by(EVENTS.c.patient_id)
    for pg in _BOTH
}
_KNOWN = {
    pg: select(ALERTS.c.patient_id, ALERTS.c.rule, ALERTS.c.key).where(_in(ALERTS.c.patient_id, pg))
    for pg in _BOTH
}
_SILENCES = {
    pg: select(SILENCES.c.patient_id, SILENCES.c.id)
    .where(
        _in(SILENCES.c.patient_id, pg),
        SILENCES.c.cancelled_at.is_(None),
        SILENCES.c.expires_at > bindparam("now"),
    )
    .order_by(SILENCES.c.expires_at)
    for pg in _BOTH
}


def _check_fingerprints(session: Session, out: dict[str, History], pg: bool) -> None:
    """A snapshot continues only while the events it covers are exactly those it saw:
    one grouped aggregate for every patient that has one."""
    going_on = [pid for pid, h in out.items() if h.snap is not None]
    if not going_on:
        return
    rows = session.execute(_COVERED[pg], {"ids": going_on})
    found = {pid: f"{n}:{total}:{top}" for pid, n, total, top in rows}
    for pid in going_on:
        h = out[pid]
        assert h.stored is not None
        if found.get(pid, "0:0:0") != h.stored.fingerprint:
            h.snap = None


def _read_events(session: Session, out: dict[str, History], stmt: Any, ids: list[str]) -> None:
    for r in session.execute(stmt, {"ids": ids}):
        out[r.patient_id].events.append(StoredEvent(r.id, r.patient_id, r.kind, r.at, r.payload))


def known_alerts(session: Session, ids: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
    """(rule, key) of every alert stored per patient: what is not raised again."""
    out: dict[str, set[tuple[str, str]]] = {}
    for pid, rule, key in session.execute(_KNOWN[on_postgres(session)], {"ids": list(ids)}):
        out.setdefault(pid, set()).add((rule, key))
    return out


def silences(session: Session, ids: Iterable[str], now: datetime) -> dict[str, int]:
    """The silence in force per patient (the one that lasts longest)."""
    rows = session.execute(_SILENCES[on_postgres(session)], {"ids": list(ids), "now": now})
    return {pid: sid for pid, sid in rows}  # the last (longest) wins
