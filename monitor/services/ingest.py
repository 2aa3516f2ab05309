"""Ingest: parsed lab messages into the store, or into quarantine, never neither.

One call per `LabMessage`, in the caller's transaction: the raw message is recorded,
the patient is matched by identifier, each draw becomes a lab event (written with
Core: the ORM's unit of work cost more than the rows), values that cannot be judged
wait in quarantine on their own (`monitor.services.held`), or the whole message is
quarantined with a reason in plain words. The patient is judged by the caller's
batch (`monitor.services.deferred`) unless `evaluate=True`.

A message is known by (source, sender, message id), compared as literals: a resend
is answered and stored once; a new version replaces only what its own earlier
versions stored, for the same patient; an older version arriving again is answered
as a duplicate; the same id from another sender is another message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
import structlog
from sqlalchemy import Row, bindparam, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from monitor.core.protocol import Protocol
from monitor.identifiers import system_aliases
from monitor.routing import Routing
from monitor.services.draws import (
    already_stored,
    digest_of,
    draws,
    lab_payload,
    replace_earlier,
    same_draws,
    supersede,
)
from monitor.services.evaluate import PatientFacts, evaluate_patient, lock_for_intake
from monitor.services.held import held_here, hold_values, resolve_taken
from monitor.services.inbound import Seen, bounded_id, clean, receive, storable
from monitor.services.intake import time_problem
from monitor.sources.model import LabMessage
from monitor.store.models import (
    AlertRow,
    PatientRow,
    QuarantineRow,
)
from monitor.store.tables import EVENTS as _EVENTS
from monitor.store.tables import IDENTIFIERS as _IDENTIFIERS
from monitor.store.tables import PATIENTS as _PATIENTS
from monitor.teams import team_for_source

log = structlog.get_logger(__name__)

Outcome = Literal["stored", "duplicate", "quarantined"]
FHIR_REFERENCE_SYSTEM = "FHIR"


@dataclass
class IngestResult:
    outcome: Outcome
    message_id: str
    patient_id: str | None = None
    events: list[int] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    quarantine_id: int | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    unreadable: bool = False
    held: list[int] = field(default_factory=list)  # quarantine items of held values
    # Stored, and its patient to be judged by the caller's batch (services/deferred.py).
    to_evaluate: bool = False


class Unmatched(ValueError):
    """The results cannot be tied to exactly one enrolled patient."""


# Built once: building a statement costs more than running it (issue 10). Core, not the
# ORM, on the per-message path: the unit of work cost more than the rows it wrote.
_BY_IDENTIFIER = sa.select(_IDENTIFIERS.c.patient_id).where(
    _IDENTIFIERS.c.system.in_(bindparam("systems", expanding=True)),
    _IDENTIFIERS.c.value == bindparam("value"),
)
_NEW_EVENTS = insert(_EVENTS).returning(_EVENTS.c.source_ref, _EVENTS.c.id)
_SET_TEAM = (
    update(_PATIENTS)
    .where(_PATIENTS.c.id == bindparam("team_of"), _PATIENTS.c.care_team.is_(None))
    .values(care_team=bindparam("team"))
)


def match_patient(session: Session, msg: LabMessage) -> str:
    """The one enrolled patient the message's identifiers name; refuses none or several.

    Systems are compared as literals, with the one equivalence FHIR defines for
    OIDs (``urn:oid:X`` is ``X``)."""
    wanted = [(storable(i.system), storable(i.value)) for i in msg.patient.identifiers]
    if msg.patient.reference:
        wanted.append((FHIR_REFERENCE_SYSTEM, storable(msg.patient.reference)))
    found: set[str] = set()
    for system, value in wanted:
        rows = session.execute(_BY_IDENTIFIER, {"systems": system_aliases(system), "value": value})
        found.update(patient for (patient,) in rows)
    if len(found) == 1:
        return found.pop()
    named = ", ".join(f"{s or '(no authority)'} {v}" for s, v in wanted) or "no identifier"
    if not found:
        raise Unmatched(f"unknown patient: no enrolled patient has the identifier(s) {named}")
    raise Unmatched(f"identifiers {named} match several patients ({', '.join(sorted(found))})")


def quarantine(
    session: Session,
    source: str,
    fmt: str,
    raw: str,
    reason: str,
    now: datetime,
    message_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    sender: str = "",
) -> QuarantineRow:
    """Hold a whole message or payload for a person. The log line says which item and
    from where, never the reason's text (it can quote values and identifiers)."""
    row = QuarantineRow(
        source=source,
        format=fmt,
        sender=bounded_id(sender),
        message_id=bounded_id(message_id) if message_id is not None else None,
        received_at=now,
        raw=storable(raw),
        reason=storable(reason),
        detail=clean(dict(detail or {})),
    )
    session.add(row)
    session.flush()
    log.warning("ingest.quarantined", source=source, quarantine_id=row.id, kind="message")
    return row


@dataclass(frozen=True)
class _Key:
    """One message's identity: the source it came in by, its sender, its id."""

    source: str
    sender: str
    message_id: str


def _resolve_waiting(session: Session, key: _Key, now: datetime, why: str) -> None:
    """Whole-message items of this message: it has now been taken in."""
    for row in session.exec(
        select(QuarantineRow).where(
            QuarantineRow.source == key.source,
            QuarantineRow.sender == key.sender,
            QuarantineRow.message_id == key.message_id,
            QuarantineRow.kind == "message",
            QuarantineRow.state == "waiting",
        )
    ):
        row.state, row.resolved_at, row.resolution = "retried", now, why
        session.add(row)


@dataclass
class _Call:
    """What one `ingest_message` call works on, passed between its steps."""

    session: Session
    msg: LabMessage
    key: _Key
    raw: str
    now: datetime
    seen: Seen
    update: bool
    retry_row: QuarantineRow | None
    notes: list[str]
    assume_tz: str
    evaluate: bool = True
    fresh: bool = False  # first sight of this (source, sender, message id)

    def hold(self, reason: str) -> IngestResult:
        """Quarantine the whole message (one waiting item per message, however often it
        is resent). A failed new version leaves the stored version as it was."""
        session, key, reason = self.session, self.key, storable(reason)
        if not self.update:
            self.seen.outcome = "quarantined"
            self.seen.detail = {"reason": reason}
            self.seen.save(session)
        row = self.retry_row
        if row is None:
            row = session.exec(
                select(QuarantineRow).where(
                    QuarantineRow.source == key.source,
                    QuarantineRow.sender == key.sender,
                    QuarantineRow.message_id == key.message_id,
                    QuarantineRow.kind == "message",
                    QuarantineRow.state == "waiting",
                )
            ).first()
        if row is None:
            detail = {
                "problems": [str(p) for p in self.msg.problems],
                "assume_tz": self.assume_tz,
            }
            row = quarantine(
                session,
                key.source,
                self.msg.source,
                self.raw,
                reason,
                self.now,
                key.message_id,
                detail,
                key.sender,
            )
        else:
            row.reason = reason
            session.add(row)
        return IngestResult(
            "quarantined", key.message_id, quarantine_id=row.id, reason=reason, notes=self.notes
        )


def _repeat(call: _Call, digest: str) -> IngestResult:
    """A version already stored, sent again: answered, stored once."""
    key, seen = call.key, call.seen
    _resolve_waiting(call.session, key, call.now, "already taken in")
    patient_id = seen.detail.get("patient_id")
    row = call.retry_row
    if row is not None and row.kind == "value" and row.state == "waiting":
        return IngestResult(
            "quarantined",
            key.message_id,
            patient_id=patient_id,
            quarantine_id=row.id,
            reason=row.reason,
            notes=["the value is still held: the message reads as it did"],
        )
    if seen.detail.get("digest") == digest:
        note = "message id seen before"
    else:
        note = "an earlier version of this message, already replaced by a newer one: it stands"
    return IngestResult("duplicate", key.message_id, patient_id=patient_id, notes=[note])


def _store_draws(
    call: _Call,
    patient: PatientFacts,
    digest: str,
) -> IngestResult:
    """Every draw of the message, all taken or none and the message held (a time in
    the future, say: every draw's time is checked before any is stored)."""
    session, msg, seen, now = call.session, call.msg, call.seen, call.now
    patient_id = patient.id
    result = IngestResult("stored", call.key.message_id, patient_id=patient_id, notes=call.notes)
    ordered = sorted(draws(msg, now).items())
    for at, _ in ordered:
        problem = time_problem(at, now, patient.start)
        if problem is not None:
            return call.hold(f"{problem}; nothing of this message was taken in")
    stored = same_draws(session, patient_id, [at for at, group in ordered if group])
    own = seen.id if call.update else None
    held_values = msg.held
    rows: list[dict[str, Any]] = []
    taken: list[tuple[datetime, list[Row[Any]], dict[str, float], dict[str, Any]]] = []
    for i, (at, group) in enumerate(ordered):
        held = held_here(msg, at) if held_values else {}
        results = {o.analyte: o.value for o in group}
        existing = stored.get(at, [])
        if not held and already_stored(existing, results, group, own):
            result.notes.append(f"draw of {at.isoformat()} already stored from another message")
            continue
        payload = lab_payload(group, held)
        rows.append(_event_values(call, patient_id, at, payload, f"m{seen.id}@{digest}#{i}"))
        taken.append((at, existing, results, payload))
    result.events = _insert_events(session, rows)
    by_time: dict[datetime, int] = {}
    for event_id, (at, existing, results, payload) in zip(result.events, taken, strict=True):
        by_time[at] = event_id
        if payload["corrected"]:
            replaced = supersede(session, existing, set(results), event_id)
            result.notes.append(f"corrected result replaces {replaced} earlier value(s)")
        elif results and not payload["preliminary"]:
            supersede(session, existing, set(results), event_id, only_preliminary=True)
    result.held = hold_values(
        session,
        msg,
        source=call.key.source,
        sender=call.key.sender,
        message_id=call.key.message_id,
        patient_id=patient_id,
        events=by_time,
        raw=call.raw,
        now=now,
        assume_tz=call.assume_tz,
    )
    return result


def _event_values(
    call: _Call, patient_id: str, at: datetime, payload: dict[str, Any], ref: str
) -> dict[str, Any]:
    """One lab event's row: `ref` (unique per source) is how its id is found again."""
    return {
        "patient_id": patient_id,
        "kind": "lab",
        "at": at,
        "recorded_at": call.now,
        "payload": payload,
        "source": call.key.source,
        "source_ref": ref,
        "recorded_by": None,
        "superseded_by": None,
        "inbound_id": call.seen.id,
    }


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """The events' ids, in `rows`' order: one INSERT ... RETURNING for them all, its
    rows matched back by their unique source_ref (RETURNING in parameter order would
    cost a statement a row on SQLite)."""
    if not rows:
        return []
    found = session.execute(_NEW_EVENTS, rows[0] if len(rows) == 1 else rows)
    ids: dict[str, int] = {ref: event_id for ref, event_id in found}
    return [ids[r["source_ref"]] for r in rows]


def _team_from_source(
    session: Session, patient: PatientFacts, msg: LabMessage, routing: Routing | None
) -> None:
    """A patient without a care team takes the one its sender names (PV1-3, FHIR
    performer) through [teams.X] sources; a team already set (a clinician's) wins."""
    if patient.care_team is not None or routing is None:
        return
    team = team_for_source(routing.teams, msg.care_source)
    if team is None:
        return
    session.execute(_SET_TEAM, {"team_of": patient.id, "team": team})
    loaded = session.identity_map.get(session.identity_key(PatientRow, patient.id))
    if loaded is not None:
        set_committed_value(loaded, "care_team", team)
    log.info("patient.care_team_from_source", patient_id=patient.id, team=team, source=msg.source)


def ingest_message(
    session: Session,
    msg: LabMessage,
    raw: str,
    source: str,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
    retry_of: int | None = None,
    assume_tz: str = "UTC",
    evaluate: bool = True,
) -> IngestResult:
    """Store one message's results (and evaluate), or quarantine it, never half of it.
    `evaluate=False` leaves the evaluation to the caller's batch (`to_evaluate`)."""
    key = _Key(source, bounded_id(msg.sender), bounded_id(msg.message_id))
    digest = digest_of(msg)
    seen, fresh = receive(session, key.source, key.sender, key.message_id, raw, now)
    versions: list[str] = []
    if seen.outcome == "stored":
        versions = list(seen.detail.get("versions") or [seen.detail.get("digest")])
    # A message never seen before (`fresh`) has no earlier version and so nothing of
    # its chain waiting in quarantine (inbound rows are never deleted): no need to look.
    call = _Call(
        session,
        msg,
        key,
        storable(raw),
        now,
        seen,
        bool(versions),
        session.get(QuarantineRow, retry_of) if retry_of is not None else None,
        [storable(str(p)) for p in msg.problems if p.effect not in ("quarantine", "held")],
        assume_tz,
        evaluate,
        fresh,
    )
    if digest in versions:
        return _repeat(call, digest)
    if not msg.usable:
        held = call.hold(msg.quarantine_reason or "nothing usable in the message")
        held.unreadable = not msg.patient.known and not msg.observations
        return held
    try:
        patient_id = match_patient(session, msg)
    except Unmatched as exc:
        return call.hold(str(exc))
    earlier_patient = seen.detail.get("patient_id")
    if call.update and earlier_patient != patient_id:
        return call.hold(
            f"this new version of message {key.message_id} names another patient than the "
            f"version stored for patient {earlier_patient}: a person must decide which is right"
        )
    patient = lock_for_intake(session, patient_id)  # once per transaction
    _team_from_source(session, patient, msg, routing)
    early = [o for o in msg.observations if o.observed_at < patient.start]
    if early:
        return call.hold(
            f"result drawn {early[0].observed_at.isoformat()} is before patient {patient_id}'s "
            f"(re)start on {patient.start.isoformat()}: not part of this course"
        )
    result = _store_draws(call, patient, digest)
    if result.outcome != "stored":
        return result
    return _finish(call, result, digest, versions, protocols, routing)


def _finish(
    call: _Call,
    result: IngestResult,
    digest: str,
    versions: list[str],
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
) -> IngestResult:
    """Close the version chain, resolve what waited, evaluate once, record the outcome."""
    session, key, seen, now = call.session, call.key, call.seen, call.now
    assert result.patient_id is not None
    if not result.events and not call.update:
        seen.outcome = "stored"
        seen.detail = {
            "patient_id": result.patient_id,
            "events": [],
            "digest": digest,
            "versions": [digest],
        }
        seen.save(session)
        if not call.fresh:
            _resolve_waiting(session, key, now, "already taken in")
        result.outcome = "duplicate"
        result.notes.append("every draw was already stored (the same results by another route)")
        return result
    if call.update and result.events:
        replaced = replace_earlier(session, seen.id, result.patient_id, result.events)
        result.notes.append(f"new version of {key.message_id} replaces {replaced} earlier draw(s)")
    why = (
        "taken in on retry" if call.retry_row is not None else "taken in when the sender resent it"
    )
    if call.update:
        why = "taken in by a new version of the message" if call.retry_row is None else why
    if not call.fresh:
        resolve_taken(
            session,
            call.msg,
            source=key.source,
            sender=key.sender,
            message_id=key.message_id,
            now=now,
            why=why,
        )
    # One evaluation for the whole message (or the caller's batch of messages): one
    # notification for what it shows.
    if call.evaluate:
        result.alerts = evaluate_patient(session, result.patient_id, now, protocols, routing)
    else:
        result.to_evaluate = True
    seen.outcome = "stored"
    seen.detail = {
        "patient_id": result.patient_id,
        "events": result.events,
        "digest": digest,
        "versions": [*versions, digest],
    }
    seen.save(session)
    row = call.retry_row
    if row is not None and row.state == "waiting":
        if row.kind == "message":
            row.state, row.resolved_at, row.resolution = "retried", now, why
            session.add(row)
        else:  # a held value that this retry still could not take in
            result.outcome, result.quarantine_id, result.reason = "quarantined", row.id, row.reason
    if not call.fresh:
        _resolve_waiting(session, key, now, why)
    log.info(
        "ingest.stored",
        source=key.source,
        patient_id=result.patient_id,
        events=result.events,
        held=len(result.held),
        alerts=len(result.alerts),
        update=call.update,
    )
    return result
