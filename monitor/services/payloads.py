"""Whole payloads (an HL7 batch, a FHIR bundle, a CSV file) through ingest.

Parsing happens here, once per payload; each message then goes through
`monitor.services.ingest.ingest_message`. A payload that cannot be read at all is
quarantined as one item.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitor import heap
from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.deferred import evaluate_results
from monitor.services.inbound import storable
from monitor.services.ingest import IngestResult, ingest_message, quarantine
from monitor.sources.limits import ParseLimits
from monitor.sources.model import LabMessage, ParseError
from monitor.store.models import AlertRow


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
    def held(self) -> int:
        """Values held in quarantine on their own, the rest of their message stored."""
        return sum(len(r.held) for r in self.results)

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.results if r.outcome == "duplicate")

    @property
    def alerts(self) -> list[AlertRow]:
        return [a for r in self.results for a in r.alerts]


def raw_of(msg: LabMessage, text: str) -> str:
    """The text to keep for one message: HL7 keeps each message of a batch on its own."""
    return msg.raw if msg.raw is not None else text


@dataclass(frozen=True)
class Parsed:
    """A payload read by its parser, before anything is stored: parsing happens on the
    source's thread, so the one writer only stores."""

    fmt: str
    text: str
    source_name: str
    assume_tz: str
    messages: tuple[LabMessage, ...] = ()
    error: ParseError | None = None


def parse_payload(
    payload: bytes | str,
    fmt: str,
    mapping: Any = None,
    source_name: str = "payload",
    assume_tz: str = "UTC",
    limits: ParseLimits | None = None,
) -> Parsed:
    """Read a payload; a payload that is not readable at all (or over `limits`, the
    parse-time bounds) comes back with `error`."""
    from monitor.sources import DEFAULT_LIMITS, parse

    if isinstance(payload, str):
        payload = storable(payload)  # a lone surrogate cannot reach a parser or the store
    text = payload if isinstance(payload, str) else payload.decode("utf-8", errors="replace")
    try:
        messages = parse(
            payload,
            fmt,  # type: ignore[arg-type]
            mapping=mapping,
            source_name=source_name,
            assume_tz=assume_tz,
            limits=limits or DEFAULT_LIMITS,
        )
    except ParseError as exc:
        return Parsed(fmt, text, source_name, assume_tz, error=exc)
    return Parsed(fmt, text, source_name, assume_tz, tuple(messages))


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
    commit_every: int = 0,
    limits: ParseLimits | None = None,
) -> PayloadResult:
    """Parse and ingest a payload. With `whole` (CSV files) it is all or nothing: if any
    part cannot be used, nothing is stored and the payload is quarantined as one.
    `commit_every` commits after that many messages (back-loading a long history holds
    the write lock for one batch at a time, and pays one commit per batch). `limits`
    are the site's `[ingest]` bounds (the defaults when None). The cyclic collector's
    full passes wait for the end (`heap.batch`): what a payload makes lives until then."""
    with heap.batch():
        parsed = parse_payload(payload, fmt, mapping, source_name, assume_tz, limits)
        return store_parsed(session, parsed, source, now, protocols, routing, whole, commit_every)


def store_parsed(
    session: Session,
    parsed: Parsed,
    source: str,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
    whole: bool = False,
    commit_every: int = 0,
    evaluate: bool = True,
) -> PayloadResult:
    """Store (or quarantine) what `parse_payload` read. The patients stored for are
    judged once per batch (before each `commit_every` commit, and at the end);
    `evaluate=False` leaves that to the caller's batch (the group writer's)."""
    if parsed.error is not None:
        exc = parsed.error
        details = [str(p) for p in exc.problems]
        q = quarantine(
            session,
            source,
            parsed.fmt,
            parsed.text,
            exc.reason,
            now,
            None,
            {"problems": details, "assume_tz": parsed.assume_tz},
        )
        return PayloadResult(quarantine_id=q.id, reason=exc.reason, problems=details)
    store = _Storing(session, parsed, source, now, protocols, routing)
    return store.whole(evaluate) if whole else store.in_batches(commit_every, evaluate)


@dataclass(frozen=True)
class _Storing:
    """One parsed payload on its way into the store: what every message shares."""

    session: Session
    parsed: Parsed
    source: str
    now: datetime
    protocols: Mapping[str, Protocol]
    routing: Routing | None

    def take(self, msg: LabMessage) -> IngestResult:
        """One message through ingest, its judging left to the batch."""
        return ingest_message(
            self.session,
            msg,
            raw_of(msg, self.parsed.text),
            self.source,
            self.now,
            self.protocols,
            self.routing,
            assume_tz=self.parsed.assume_tz,
            evaluate=False,
        )

    def judge(self, results: list[IngestResult], more_to_come: Collection[str] = ()) -> None:
        evaluate_results(
            self.session, results, self.now, self.protocols, self.routing, more_to_come=more_to_come
        )

    def whole(self, evaluate: bool) -> PayloadResult:
        """All of the file or none of it: one message held holds the whole file."""
        parsed, out = self.parsed, PayloadResult()
        nested = self.session.begin_nested()
        for msg in parsed.messages:
            result = self.take(msg)
            out.results.append(result)
            if result.outcome == "quarantined":
                nested.rollback()
                reason = f"{parsed.source_name}: {result.reason}; nothing in the file was taken in"
                q = quarantine(
                    self.session,
                    self.source,
                    parsed.fmt,
                    parsed.text,
                    reason,
                    self.now,
                    None,
                    {"message_id": msg.message_id, "assume_tz": parsed.assume_tz},
                )
                return PayloadResult(quarantine_id=q.id, reason=reason)
        nested.commit()
        if evaluate:
            self.judge(out.results)
        return out

    def in_batches(self, commit_every: int, evaluate: bool) -> PayloadResult:
        """Message by message, committed every `commit_every` (0: by the caller), each
        batch's patients judged before its commit. A patient with more messages
        further on is judged only up to its latest stored result (judged to now, the
        batch would call overdue the tests the rest of the file brings), and to now
        at the end even if what came later was not stored (a resend)."""
        out = PayloadResult()
        messages = self.parsed.messages
        batch_start = 0
        last_of = _last_message_of_each_patient(messages) if commit_every else {}
        short: dict[str, IngestResult] = {}  # judged only up to their latest result so far
        for number, msg in enumerate(messages, 1):
            out.results.append(self.take(msg))
            if commit_every and number % commit_every == 0:
                if evaluate:
                    batch = out.results[batch_start:]
                    later = {
                        r.patient_id
                        for m, r in zip(messages[batch_start:number], batch, strict=True)
                        if r.patient_id is not None and last_of[_patient_key(m)] > number
                    }
                    judged = {r.patient_id: r for r in batch if r.to_evaluate and r.patient_id}
                    self.judge(batch, more_to_come=later)
                    for pid, r in judged.items():
                        if pid in later:
                            short[pid] = r
                        else:
                            short.pop(pid, None)
                batch_start = number
                self.session.commit()  # a long back-load never holds the write lock for long
        if evaluate:
            final = out.results[batch_start:]
            judged_now = {r.patient_id for r in final if r.to_evaluate}
            pending = [r for pid, r in short.items() if pid not in judged_now]
            for r in pending:
                r.to_evaluate = True
            self.judge([*final, *pending])
        return out


def _patient_key(msg: LabMessage) -> tuple[object, ...]:
    """The patient as the message names them (before matching): enough to tell that a
    back-load holds more results for the same person further on."""
    return (msg.patient.identifiers, msg.patient.reference)


def _last_message_of_each_patient(messages: Sequence[LabMessage]) -> dict[tuple[object, ...], int]:
    """Per patient key, the (1-based) number of its last message in the payload."""
    return {_patient_key(m): n for n, m in enumerate(messages, 1)}
