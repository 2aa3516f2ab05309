"""Ingest: parsed lab messages into the store, or into quarantine, never neither.

One call per `LabMessage`, one transaction: the raw message is recorded, the patient
is matched by identifier, each draw becomes a lab event through intake (and is
evaluated at once), or the whole message is quarantined with a reason in plain
words. A message id seen before is answered as a duplicate and stored once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.evaluate import evaluate_patient
from monitor.services.intake import IntakeError, record_event
from monitor.sources.model import LabMessage, Observation
from monitor.store.models import (
    AlertRow,
    EventRow,
    InboundMessageRow,
    PatientIdentifierRow,
    PatientRow,
    QuarantineRow,
)

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


class Unmatched(ValueError):
    """The results cannot be tied to exactly one enrolled patient."""


def match_patient(session: Session, msg: LabMessage) -> str:
    """The one enrolled patient the message's identifiers name; refuses none or several."""
    wanted = [(i.system, i.value) for i in msg.patient.identifiers]
    if msg.patient.reference:
        wanted.append((FHIR_REFERENCE_SYSTEM, msg.patient.reference))
    found: set[str] = set()
    for system, value in wanted:
        row = session.exec(
            select(PatientIdentifierRow).where(
                PatientIdentifierRow.system == system, PatientIdentifierRow.value == value
            )
        ).first()
        if row is not None:
            found.add(row.patient_id)
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
) -> QuarantineRow:
    row = QuarantineRow(
        source=source,
        format=fmt,
        message_id=message_id,
        received_at=now,
        raw=raw,
        reason=reason,
        detail=dict(detail or {}),
    )
    session.add(row)
    session.flush()
    log.warning("ingest.quarantined", source=source, quarantine_id=row.id, reason=reason)
    return row


def _draws(observations: tuple[Observation, ...]) -> dict[datetime, list[Observation]]:
    out: dict[datetime, list[Observation]] = {}
    for obs in observations:
        out.setdefault(obs.observed_at, []).append(obs)
    return out


def _supersede(
    session: Session,
    patient_id: str,
    at: datetime,
    analytes: set[str],
    new_id: int,
    only_preliminary: bool = False,
) -> int:
    """A corrected result replaces the stored value it corrects (same draw, same test)."""
    replaced = 0
    for old in session.exec(
        select(EventRow).where(
            EventRow.patient_id == patient_id,
            EventRow.kind == "lab",
            EventRow.at == at,
            col(EventRow.superseded_by).is_(None),
            col(EventRow.id) != new_id,
        )
    ):
        if only_preliminary and not old.payload.get("preliminary", False):
            continue
        if analytes & set(old.payload.get("results", {})):
            old.superseded_by = new_id
            session.add(old)
            replaced += 1
    return replaced


def digest_of(msg: LabMessage) -> str:
    """What a message says, as a short hash: analyte, value, unit, ULN, time, status.

    The same message id with the same digest is a resend; with another digest it is
    an update (a new FHIR version, a re-sent export) that replaces the old values.
    """
    parts = sorted(
        f"{o.analyte}|{o.value!r}|{o.uln!r}|{o.observed_at.isoformat()}|{o.status}"
        for o in msg.observations
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _resolve_waiting(
    session: Session, source: str, message_id: str, now: datetime, why: str
) -> None:
    for row in session.exec(
        select(QuarantineRow).where(
            QuarantineRow.source == source,
            QuarantineRow.message_id == message_id,
            QuarantineRow.state == "waiting",
        )
    ):
        row.state, row.resolved_at, row.resolution = "retried", now, why
        session.add(row)


def _already_stored(
    session: Session,
    patient_id: str,
    at: datetime,
    results: Mapping[str, float],
    group: list[Observation],
) -> bool:
    """The same results of the same draw, already stored (e.g. by another route or under
    another file name): storing them again would judge them, and alert, twice."""
    status_final = all(o.status != "corrected" for o in group)
    preliminary = all(o.status == "preliminary" for o in group)
    for row in session.exec(
        select(EventRow).where(
            EventRow.patient_id == patient_id,
            EventRow.kind == "lab",
            EventRow.at == at,
            col(EventRow.superseded_by).is_(None),
        )
    ):
        if (
            status_final
            and row.payload.get("results") == dict(results)
            and bool(row.payload.get("preliminary", False)) == preliminary
        ):
            return True
    return False


def _replace_earlier(session: Session, source: str, message_id: str, new_id: int) -> int:
    """Events an earlier version of this message stored are superseded by the new ones."""
    replaced = 0
    for old in session.exec(
        select(EventRow).where(
            EventRow.source == source,
            col(EventRow.source_ref).startswith(f"{message_id}@"),
            col(EventRow.superseded_by).is_(None),
            col(EventRow.id) != new_id,
        )
    ):
        old.superseded_by = new_id
        session.add(old)
        replaced += 1
    return replaced


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
) -> IngestResult:
    """Store one message's results (and evaluate), or quarantine it, never half of it.

    All of a message's draws are stored in one savepoint: if any cannot be taken
    (a time in the future, say), none is, and the message is quarantined whole.
    """
    digest = digest_of(msg)
    seen = session.exec(
        select(InboundMessageRow).where(
            InboundMessageRow.source == source, InboundMessageRow.message_id == msg.message_id
        )
    ).first()
    update = False
    if seen is not None and seen.outcome == "stored":
        if seen.detail.get("digest") == digest:
            _resolve_waiting(session, source, msg.message_id, now, "already taken in")
            return IngestResult("duplicate", msg.message_id, notes=["message id seen before"])
        update = True  # same id, new content: it replaces what the earlier one said
    if seen is None:
        seen = InboundMessageRow(source=source, message_id=msg.message_id, received_at=now, raw=raw)
    notes = [str(p) for p in msg.problems if p.effect != "quarantine"]
    detail = {
        "problems": [str(p) for p in msg.problems],
        "sender": msg.sender,
        "assume_tz": assume_tz,
    }

    def hold(reason: str) -> IngestResult:
        if not update:  # a failed update leaves the earlier, stored version as it was
            seen.outcome = "quarantined"
            seen.detail = {"reason": reason}
            session.add(seen)
        if retry_of is not None:
            row = session.get(QuarantineRow, retry_of)
            assert row is not None
            row.reason = reason
            session.add(row)
            return IngestResult(
                "quarantined", msg.message_id, quarantine_id=retry_of, reason=reason, notes=notes
            )
        again = session.exec(
            select(QuarantineRow).where(
                QuarantineRow.source == source,
                QuarantineRow.message_id == msg.message_id,
                QuarantineRow.state == "waiting",
            )
        ).first()
        if again is not None:  # a resend of a message already waiting: one item, not two
            again.reason = reason
            session.add(again)
            return IngestResult(
                "quarantined", msg.message_id, quarantine_id=again.id, reason=reason, notes=notes
            )
        q = quarantine(session, source, msg.source, raw, reason, now, msg.message_id, detail)
        return IngestResult(
            "quarantined", msg.message_id, quarantine_id=q.id, reason=reason, notes=notes
        )

    if not msg.usable:
        held = hold(msg.quarantine_reason or "nothing usable in the message")
        held.unreadable = not msg.patient.known and not msg.observations
        return held
    try:
        patient_id = match_patient(session, msg)
    except Unmatched as exc:
        return hold(str(exc))
    patient = session.get(PatientRow, patient_id)
    assert patient is not None
    early = [o for o in msg.observations if o.observed_at < patient.start]
    if early:
        return hold(
            f"result drawn {early[0].observed_at.isoformat()} is before patient {patient_id}'s "
            f"(re)start on {patient.start.isoformat()}: not part of this course"
        )
    result = IngestResult("stored", msg.message_id, patient_id=patient_id, notes=notes)
    savepoint = session.begin_nested()
    for i, (at, group) in enumerate(sorted(_draws(msg.observations).items())):
        results = {o.analyte: o.value for o in group}
        if _already_stored(session, patient_id, at, results, group):
            result.notes.append(f"draw of {at.isoformat()} already stored from another message")
            continue
        payload: dict[str, Any] = {
            "results": results,
            "uln": {o.analyte: o.uln for o in group if o.uln is not None},
            "original": {o.analyte: [o.original_value, o.original_unit] for o in group},
            "preliminary": all(o.status == "preliminary" for o in group),
            "corrected": any(o.status == "corrected" for o in group),
            "codes": {o.analyte: f"{o.code.system}|{o.code.code}" for o in group},
        }
        try:
            event, _ = record_event(
                session,
                patient_id,
                "lab",
                at,
                payload,
                now,
                protocols,
                source=source,
                source_ref=f"{msg.message_id}@{digest}#{i}",
                routing=routing,
                evaluate=False,
            )
        except IntakeError as exc:
            savepoint.rollback()
            return hold(f"{exc}; nothing of this message was taken in")
        assert event.id is not None
        result.events.append(event.id)
        if payload["corrected"]:
            replaced = _supersede(session, patient_id, at, set(results), event.id)
            result.notes.append(f"corrected result replaces {replaced} earlier value(s)")
        elif not payload["preliminary"]:
            _supersede(session, patient_id, at, set(results), event.id, only_preliminary=True)
    savepoint.commit()
    if not result.events and not update:
        seen.outcome = "stored"
        seen.detail = {"patient_id": patient_id, "events": [], "digest": digest}
        session.add(seen)
        _resolve_waiting(session, source, msg.message_id, now, "already taken in")
        return IngestResult(
            "duplicate",
            msg.message_id,
            patient_id=patient_id,
            notes=[*notes, "every draw was already stored (the same results by another route)"],
        )
    if update and result.events:
        replaced = _replace_earlier(session, source, msg.message_id, result.events[0])
        result.notes.append(f"new version of {msg.message_id} replaces {replaced} earlier draw(s)")
    # One evaluation for the whole message: one notification for what it shows.
    result.alerts = evaluate_patient(session, patient_id, now, protocols, routing)
    seen.outcome = "stored"
    seen.detail = {"patient_id": patient_id, "events": result.events, "digest": digest}
    session.add(seen)
    why = "taken in on retry" if retry_of is not None else "taken in when the sender resent it"
    if retry_of is not None:
        row = session.get(QuarantineRow, retry_of)
        assert row is not None
        row.state, row.resolved_at, row.resolution = "retried", now, why
        session.add(row)
    _resolve_waiting(session, source, msg.message_id, now, why)
    log.info(
        "ingest.stored",
        source=source,
        patient_id=patient_id,
        events=len(result.events),
        alerts=len(result.alerts),
        update=update,
    )
    return result


@dataclass
class PayloadResult:
    """What became of one payload (an HL7 batch, a FHIR bundle, a CSV file)."""

    results: list[IngestResult] = field(default_factory=list)
    quarantine_id: int | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(1 for r in self.results if r.outcome == "stored")

    @property
    def quarantined(self) -> int:
        return sum(1 for r in self.results if r.outcome == "quarantined") + (
            1 if self.quarantine_id is not None else 0
        )

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.results if r.outcome == "duplicate")

    @property
    def alerts(self) -> list[AlertRow]:
        return [a for r in self.results for a in r.alerts]


def raw_of(msg: LabMessage, text: str) -> str:
    """The text to keep for one message: HL7 keeps each message of a batch on its own."""
    return msg.raw if msg.raw is not None else text


def ingest_payload(
    session: Session,
    payload: bytes | str,
    fmt: str,
    source: str,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
    mapping: Any = None,
    source_name: str = "payload",
    whole: bool = False,
    assume_tz: str = "UTC",
    commit_each: bool = False,
) -> PayloadResult:
    """Parse and ingest a payload. With `whole` (CSV files) it is all or nothing: if any
    part cannot be used, nothing is stored and the payload is quarantined as one.
    `commit_each` commits message by message (back-loading a long history)."""
    from monitor.sources import parse
    from monitor.sources.model import ParseError

    text = payload if isinstance(payload, str) else payload.decode("utf-8", errors="replace")
    try:
        messages = parse(
            payload,
            fmt,  # type: ignore[arg-type]
            mapping=mapping,
            source_name=source_name,
            assume_tz=assume_tz,
        )
    except ParseError as exc:
        details = [str(p) for p in exc.problems]
        q = quarantine(
            session,
            source,
            fmt,
            text,
            exc.reason,
            now,
            None,
            {"problems": details, "assume_tz": assume_tz},
        )
        return PayloadResult(quarantine_id=q.id, reason=exc.reason, problems=details)
    out = PayloadResult()
    if whole:
        nested = session.begin_nested()
        for msg in messages:
            result = ingest_message(
                session,
                msg,
                raw_of(msg, text),
                source,
                now,
                protocols,
                routing,
                assume_tz=assume_tz,
            )
            out.results.append(result)
            if result.outcome == "quarantined":
                nested.rollback()
                reason = f"{source_name}: {result.reason}; nothing in the file was taken in"
                q = quarantine(
                    session,
                    source,
                    fmt,
                    text,
                    reason,
                    now,
                    None,
                    {"message_id": msg.message_id, "assume_tz": assume_tz},
                )
                return PayloadResult(quarantine_id=q.id, reason=reason)
        nested.commit()
        return out
    for msg in messages:
        out.results.append(
            ingest_message(
                session,
                msg,
                raw_of(msg, text),
                source,
                now,
                protocols,
                routing,
                assume_tz=assume_tz,
            )
        )
        if commit_each:
            session.commit()  # a long back-load never holds the write lock for long
    return out
