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
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from monitor.routing import Routing
from monitor.services.histories import History, on_postgres, silences
from monitor.services.outbox import delivery_values, plan_group
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
        session.execute(insert(ALERTS), [d.values() for d in drafts])
        # Read back by their unique codes: the ids for the deliveries, and the rows
        # the caller returns (SQLite's RETURNING over many rows would be one
        # statement per row).
        stored = list(session.exec(_BY_CODES, params={"codes": [d.code for d in drafts]}))
        ids = {a.code: a.id for a in stored}
        for d in drafts:
            d.id = ids[d.code]
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
            session.execute(insert(DELIVERIES), rows)
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
_BY_CODES = (
    select(AlertRow)
    .where(col(AlertRow.code).in_(bindparam("codes", expanding=True)))
    .order_by(col(AlertRow.id))
)
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
