"""The batch evaluator's writes: a few statements for the whole batch.

New alerts are planned (silence, route, escalation chain) before they exist, then
inserted in one statement that returns their ids; their step-0 deliveries in one
more; snapshots upserted and patients' next checks updated in one each. Core, not
the ORM: building and flushing an ORM object per alert, delivery and snapshot was
most of a sweep's time, and nothing here needs the unit of work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.base import manager_of_class
from sqlmodel import Session

from monitor.routing import Routing
from monitor.services.codes import fresh_codes
from monitor.services.histories import History, on_postgres, silences
from monitor.services.outbox import delivery_values, plan_group
from monitor.store.driver import pg_insert_each
from monitor.store.models import AlertRow, PatientRow
from monitor.store.tables import ALERTS, DELIVERIES, PATIENTS, SNAPSHOTS

log = structlog.get_logger(__name__)


@dataclass
class Draft:
    """A new alert before it is inserted: what the outbox plans on, then one row of
    the batch's single INSERT."""

    code: str
    patient_id: str
    rule: str
    severity: str
    key: str
    at: datetime
    raised_at: datetime
    message: str
    details: dict[str, Any]
    profile: str
    group_id: str
    id: int | None = None
    state: str = "open"
    care_team: str | None = None
    silenced_by: int | None = None
    route: str | None = None
    chain: list[Any] = field(default_factory=list)
    escalation_step: int = 0
    next_escalation_at: datetime | None = None

    def values(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        del out["id"]
        return out


@dataclass(frozen=True)
class Change:
    """What an evaluation changes on the patient: the next check, the snapshot."""

    patient_id: str
    next_check_at: datetime | None
    snapshot: dict[str, Any] | None


def write(
    session: Session,
    groups: Sequence[list[Draft]],
    changes: Sequence[Change],
    found: Mapping[str, History],
    now: datetime,
    routing: Routing | None,
) -> list[AlertRow]:
    """Store every group's alerts and deliveries and every patient's change; the new
    alerts, as stored rows."""
    drafts = [d for g in groups for d in g]
    notify = _plan(session, groups, found, now, routing) if drafts else []
    stored: list[AlertRow] = []
    if drafts:
        stored = _insert_alerts(session, drafts)
        for d in drafts:
            log.info(
                "alert.raised",
                patient_id=d.patient_id,
                rule=d.rule,
                severity=d.severity,
                code=d.code,
                at=d.at.isoformat(),
            )
    if notify and routing is not None:
        rows = [
            v
            for ordered in notify
            for v in delivery_values(ordered, ordered[0].chain[0], routing, now, "alert", 0)
        ]
        if rows:
            session.execute(_ADD_DELIVERIES, rows[0] if len(rows) == 1 else rows)
    _store_snapshots(session, [c.snapshot for c in changes if c.snapshot is not None])
    _store_checks(session, changes, now)
    return stored


def _plan(
    session: Session,
    groups: Sequence[list[Draft]],
    found: Mapping[str, History],
    now: datetime,
    routing: Routing | None,
) -> list[list[Draft]]:
    """Each group silenced and routed before insertion: the groups to notify."""
    if routing is None:
        return []
    held = silences(session, {g[0].patient_id for g in groups if g}, now)
    out = []
    for g in groups:
        if not g:
            continue
        pid = g[0].patient_id
        ordered = plan_group(g, held.get(pid), found[pid].row.care_team, routing, now)
        if ordered:
            out.append(ordered)
    return out


def _store_snapshots(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    session.execute(_UPSERT_PG if on_postgres(session) else _UPSERT_SQLITE, rows)


def _upsert(ins: Any) -> Any:
    keep = {c.name: ins.excluded[c.name] for c in SNAPSHOTS.c if c.name != "patient_id"}
    return ins.on_conflict_do_update(index_elements=["patient_id"], set_=keep)


# Built once: building a statement costs more than running it.
_ADD_DELIVERIES = insert(DELIVERIES)
# A code already taken is skipped, not an error (only that constraint: the idempotency
# key still raises), and comes back missing from RETURNING; unordered, so SQLite runs
# the batch as one statement. PostgreSQL takes the same SQL through psycopg
# (store/driver.py, `pg_insert_each`).
_ADD_ALERTS_SQLITE = (
    sqlite_insert(ALERTS)
    .on_conflict_do_nothing(index_elements=["code"])
    .returning(ALERTS.c.code, ALERTS.c.id)
)
_PG_ADD_ALERTS_TAIL = "ON CONFLICT (code) DO NOTHING RETURNING code, id"


def _insert_alerts(session: Session, drafts: list[Draft]) -> list[AlertRow]:
    """Insert the drafts, each under a code nobody holds; the stored rows, in the
    session without reading them back. Codes are random: one that clashes with a
    stored alert (or another instance's, at the same moment) is drawn again, with no
    SELECT before the insert: the unique index is the check."""
    pg = on_postgres(session)
    pending = drafts
    while pending:
        rows = [d.values() for d in pending]
        if pg:  # one short text in a pipeline, not 50 KB of VALUES (store/driver.py)
            ids = dict(pg_insert_each(session, ALERTS, rows, _PG_ADD_ALERTS_TAIL))
        else:
            one_or_many = rows[0] if len(rows) == 1 else rows
            ids = dict(session.execute(_ADD_ALERTS_SQLITE, one_or_many).all())
        clashed = [d for d in pending if d.code not in ids]
        for d in pending:
            d.id = ids.get(d.code)
        if clashed:  # rare: draw again, none of the batch's own codes
            codes = fresh_codes(len(clashed), {draft.code for draft in drafts})
            for d, code in zip(clashed, codes, strict=True):
                d.code = code
        pending = clashed
    return [_stored(session, d) for d in drafts]


def _stored(session: Session, d: Draft) -> AlertRow:
    """The row just inserted, made as a query's load makes it (attributes written to
    the instance's dict, no change events; persistent, nothing to flush): reading the
    batch's alerts back cost more than writing them, and `AlertRow(**values)` ~60 us
    an alert. The columns a draft leaves out (acknowledgement, resolution, note) were
    inserted as NULL."""
    values = d.values()
    values["id"] = d.id
    for name in _ALERT_COLUMNS.difference(values):
        values[name] = None
    row: AlertRow = _ALERTS_MANAGER.new_instance()
    row.__dict__.update(values)
    object.__setattr__(row, "__pydantic_fields_set__", set(values))
    make_transient_to_detached(row)
    session.add(row)
    return row


_ALERTS_MANAGER = manager_of_class(AlertRow)
_ALERT_COLUMNS = frozenset(c.name for c in ALERTS.c)
_UPSERT_PG = _upsert(pg_insert(SNAPSHOTS))
_UPSERT_SQLITE = _upsert(sqlite_insert(SNAPSHOTS))
_CHECKS = (
    update(PATIENTS)
    .where(PATIENTS.c.id == bindparam("b_id"))
    .values(next_check_at=bindparam("b_next"), evaluated_at=bindparam("b_now"))
)


def _store_checks(session: Session, changes: Sequence[Change], now: datetime) -> None:
    """next_check_at and evaluated_at, in the store and on any loaded PatientRow."""
    if not changes:
        return
    session.execute(
        _CHECKS, [{"b_id": c.patient_id, "b_next": c.next_check_at, "b_now": now} for c in changes]
    )
    for c in changes:
        loaded = session.identity_map.get(session.identity_key(PatientRow, c.patient_id))
        if loaded is not None:
            set_committed_value(loaded, "next_check_at", c.next_check_at)
            set_committed_value(loaded, "evaluated_at", now)
