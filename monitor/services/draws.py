"""A message's draws as lab events: what each stores, what it replaces, what repeats.

Pure bookkeeping for `monitor.services.ingest`: which draws a message holds, the
payload of each, the digest that tells a resend from a new version, and the
supersede rules (a correction replaces the value it corrects; a new version replaces
its own chain's events and no one else's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row, bindparam, update
from sqlmodel import Session, col, select

from monitor.services.held import held_times
from monitor.services.inbound import clean, storable
from monitor.sources.model import LabMessage, Observation
from monitor.store.models import EventRow
from monitor.store.tables import EVENTS as _EVENTS


def draws(msg: LabMessage, now: datetime) -> dict[datetime, list[Observation]]:
    """The message's draws by time, with a draw for each held value whose own draw
    has no other value (its panel must still show that a value waits)."""
    out: dict[datetime, list[Observation]] = {}
    for obs in msg.observations:
        out.setdefault(obs.observed_at, []).append(obs)
    for at in held_times(msg):
        out.setdefault(at, [])
    if not out and msg.held:  # held values of unknown time and nothing else
        out[msg.sent_at or now] = []
    return out


def same_draws(
    session: Session, patient_id: str, times: Sequence[datetime]
) -> dict[datetime, list[Row[Any]]]:
    """The patient's current lab events of each draw time, read once per message for
    `already_stored` and `supersede` both (Core rows: id, payload, superseded_by,
    inbound_id)."""
    out: dict[datetime, list[Row[Any]]] = {}
    if not times:
        return out
    params = {"patient_id": patient_id, "times": list(times)}
    for row in session.execute(_SAME_DRAWS, params):
        out.setdefault(row.at, []).append(row)
    return out


def same_draw(session: Session, patient_id: str, at: datetime) -> list[Row[Any]]:
    """`same_draws` of one draw."""
    return same_draws(session, patient_id, [at]).get(at, [])


# Built once: building a statement costs more than running it (issue 10).
_SAME_DRAWS = sa.select(
    _EVENTS.c.id, _EVENTS.c.at, _EVENTS.c.payload, _EVENTS.c.superseded_by, _EVENTS.c.inbound_id
).where(
    _EVENTS.c.patient_id == bindparam("patient_id"),
    _EVENTS.c.kind == "lab",
    _EVENTS.c.at.in_(bindparam("times", expanding=True)),
    _EVENTS.c.superseded_by.is_(None),
)
_SUPERSEDE = (
    update(_EVENTS)
    .where(_EVENTS.c.id.in_(bindparam("old_ids", expanding=True)))
    .values(superseded_by=bindparam("new_id"))
)


def supersede(
    session: Session,
    existing: Sequence[Row[Any]],
    analytes: set[str],
    new_id: int,
    only_preliminary: bool = False,
) -> int:
    """A corrected result replaces the stored value it corrects (same draw, same test):
    `existing` is `same_draw` as read before the new event was stored."""
    old_ids = []
    for old in existing:
        if old.id == new_id or old.superseded_by is not None:
            continue
        if only_preliminary and not old.payload.get("preliminary", False):
            continue
        if analytes & set(old.payload.get("results", {})):
            old_ids.append(old.id)
    if old_ids:
        session.execute(_SUPERSEDE, {"old_ids": old_ids, "new_id": new_id})
    return len(old_ids)


def digest_of(msg: LabMessage) -> str:
    """What a message says, as a short hash: analyte, value, unit, ULN, time, status,
    and which values are held.

    The same message id with the same digest is a resend; with another digest it is
    a new version (a FHIR update, a corrected export, a value the mapping now knows).
    """
    parts = sorted(
        f"{o.analyte}|{o.value!r}|{o.uln!r}|{o.observed_at.isoformat()}|{o.status}"
        for o in msg.observations
    )
    parts += sorted(f"held|{p.label}|{p.at.isoformat() if p.at else '-'}" for p in msg.held)
    return hashlib.sha256(storable("\n".join(parts)).encode()).hexdigest()[:16]


def already_stored(
    existing: Sequence[Row[Any]],
    results: Mapping[str, float],
    group: list[Observation],
    own_chain: int | None,
) -> bool:
    """The same results of the same draw, already stored (e.g. by another route or under
    another file name): storing them again would judge them, and alert, twice. Events of
    the message's own earlier version do not count: the new version replaces them.
    `existing` is `same_draw` of the draw."""
    if not results:
        return False
    status_final = all(o.status != "corrected" for o in group)
    preliminary = all(o.status == "preliminary" for o in group)
    for row in existing:
        if own_chain is not None and row.inbound_id == own_chain:
            continue
        if (
            status_final
            and row.payload.get("results") == dict(results)
            and bool(row.payload.get("preliminary", False)) == preliminary
        ):
            return True
    return False


def replace_earlier(session: Session, inbound_id: int, patient_id: str, new: list[int]) -> int:
    """Events an earlier version of this message stored for this patient are superseded
    by the new version's first event: the chain's own events and no one else's."""
    replaced = 0
    for old in session.exec(
        select(EventRow).where(
            EventRow.inbound_id == inbound_id,
            EventRow.patient_id == patient_id,
            col(EventRow.superseded_by).is_(None),
            col(EventRow.id).not_in(new),
        )
    ):
        old.superseded_by = new[0]
        session.add(old)
        replaced += 1
    return replaced


def lab_payload(group: list[Observation], held: dict[str, str]) -> dict[str, Any]:
    """The stored payload of one draw. Built field by field rather than through
    `clean`: only the sender's texts can hold what the store cannot (analytes are
    the core's names, values and ULNs floats), and walking the whole payload was a
    fifth of storing a CSV row."""
    results: dict[str, float] = {}
    uln: dict[str, float] = {}
    original: dict[str, list[str]] = {}
    codes: dict[str, str] = {}
    for o in group:
        a = o.analyte
        results[a] = o.value
        if o.uln is not None:
            uln[a] = o.uln
        original[a] = [storable(o.original_value), storable(o.original_unit)]
        codes[a] = storable(f"{o.code.system}|{o.code.code}")
    payload: dict[str, Any] = {
        "results": results,
        "uln": uln,
        "original": original,
        "preliminary": bool(group) and all(o.status == "preliminary" for o in group),
        "corrected": any(o.status == "corrected" for o in group),
        "codes": codes,
    }
    if held:
        payload["held"] = clean(held)
    return payload
