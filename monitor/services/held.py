"""Held values: one liver value that cannot be judged waits in quarantine on its own.

A bilirubin with no unit, an AST under a code the mapping does not know, a value
whose comparator cannot be judged: each becomes a quarantine item of kind
``value`` (patient, label, the sender's code) while the rest of its message is
stored. The draw it belongs to carries it in ``payload["held"]`` (label -> reason),
so the panel is never called normal while it waits (`monitor.core.panel`).

The mark stays current: a new version or a retry that takes the value in resolves
the item (the new draw no longer carries it), a discard removes the mark from the
draws that carry it, and a later result of the same analyte supersedes it in the
panel's judgement.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.core.units import DISPLAY_NAME
from monitor.services import snapshots
from monitor.services.inbound import bounded_id, clean, storable
from monitor.sources.model import LabMessage, Problem
from monitor.store.models import EventRow, QuarantineRow

log = structlog.get_logger(__name__)


def held_key(problem: Problem) -> str:
    """One held value of a message: its label and draw time."""
    at = problem.at.isoformat() if problem.at is not None else "-"
    return storable(f"{problem.label or problem.location}@{at}")


def held_here(msg: LabMessage, at: datetime) -> dict[str, str]:
    """The held values a draw at `at` waits on: those of that draw, and those whose draw
    time could not be read (they may belong to any draw of the message)."""
    out: dict[str, str] = {}
    for p in msg.held:
        if p.at is None or p.at == at:
            out[storable(p.label or p.location)] = storable(p.reason)
    return out


def held_times(msg: LabMessage) -> set[datetime]:
    return {p.at for p in msg.held if p.at is not None}


def _chain(session: Session, source: str, sender: str, message_id: str) -> list[QuarantineRow]:
    return list(
        session.exec(
            select(QuarantineRow).where(
                QuarantineRow.source == source,
                QuarantineRow.sender == sender,
                QuarantineRow.message_id == message_id,
                QuarantineRow.kind == "value",
                QuarantineRow.state == "waiting",
            )
        )
    )


def hold_values(
    session: Session,
    msg: LabMessage,
    *,
    source: str,
    sender: str,
    message_id: str,
    patient_id: str,
    events: dict[datetime, int],
    raw: str,
    now: datetime,
    assume_tz: str,
) -> list[int]:
    """One waiting item per held value of `msg` (an item still waiting from an earlier
    version is kept and pointed at the new draws); returns their ids."""
    if not msg.held:
        return []
    waiting = {str(r.detail.get("key")): r for r in _chain(session, source, sender, message_id)}
    raw = storable(raw)
    ids: list[int] = []
    for p in msg.held:
        key = held_key(p)
        carried = sorted(e for at, e in events.items() if p.at is None or p.at == at)
        name = DISPLAY_NAME.get(p.label, p.label or "a value")
        reason = storable(f"{name} of patient {patient_id} is held: {p}")
        row = waiting.get(key)
        if row is None:
            row = QuarantineRow(
                source=source,
                format=msg.source,
                sender=sender,
                message_id=message_id,
                kind="value",
                patient_id=patient_id,
                label=bounded_id(p.label or p.location),
                code=bounded_id(p.code) if p.code else None,
                received_at=now,
                raw=raw,
                reason=reason,
            )
        row.reason = reason
        row.detail = clean(
            {
                "key": key,
                "at": p.at.isoformat() if p.at is not None else None,
                "location": p.location,
                "events": carried,
                "assume_tz": assume_tz,
            }
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        ids.append(row.id)
        waiting[key] = row
        log.warning("ingest.value_held", source=source, quarantine_id=row.id, patient_id=patient_id)
    return ids


def resolve_taken(
    session: Session,
    msg: LabMessage,
    *,
    source: str,
    sender: str,
    message_id: str,
    now: datetime,
    why: str,
) -> list[int]:
    """Items of this message's chain that its newest version no longer holds: taken in."""
    still = {held_key(p) for p in msg.held}
    resolved: list[int] = []
    for row in _chain(session, source, sender, message_id):
        if str(row.detail.get("key")) in still:
            continue
        row.state, row.resolved_at, row.resolution = "retried", now, why
        session.add(row)
        assert row.id is not None
        resolved.append(row.id)
    return resolved


def release(session: Session, row: QuarantineRow) -> None:
    """A discarded value no longer stands in the way: drop its mark from its draws."""
    label = row.label or ""
    for event_id in row.detail.get("events", []):
        event = session.get(EventRow, int(event_id))
        if event is None or label not in event.payload.get("held", {}):
            continue
        held = {k: v for k, v in event.payload["held"].items() if k != label}
        payload: dict[str, Any] = {**event.payload, "held": held}
        if not held:
            payload.pop("held")
        event.payload = payload
        session.add(event)
        snapshots.drop(session, event.patient_id)  # changed in place: replay once


def unmapped_counts(session: Session, analytes: Iterable[str]) -> list[tuple[str, str, int]]:
    """(sender, code, waiting values) for held values whose code the mapping does not
    know, most first: the mapping gap, where a person can see it."""
    known = list(analytes)
    rows = session.exec(
        select(QuarantineRow.sender, QuarantineRow.code, func.count())
        .where(
            QuarantineRow.kind == "value",
            QuarantineRow.state == "waiting",
            col(QuarantineRow.code).is_not(None),
            col(QuarantineRow.label).not_in(known),
        )
        .group_by(col(QuarantineRow.sender), col(QuarantineRow.code))
        .order_by(func.count().desc())
    ).all()
    return [(str(s), str(c), int(n)) for s, c, n in rows]
