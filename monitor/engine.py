"""The pure core's one entry point: a patient's whole course, evaluated up to `until`.

The engine walks the events in order and, between them, the moments when time alone
can make a rule fire (a deadline plus its grace, the end of a waiting period or of a
symptom window). Every finding carries a key, so the caller may run it again over
the same history as often as it likes: the daemon does so on each new event and
each deadline sweep, storing only findings it has not stored before, and replay
does so on a simulated clock. Same code, same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.core.domain import Enrolled, Event, Finding, Patient, Tick
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState
from monitor.core.timeline import Position, next_checkpoint, position
from monitor.rules import evaluate


@dataclass(frozen=True)
class Snapshot:
    """The engine's state just after its last event, at `covers` (before the ticks
    that follow it): an event dated after `covers` continues from it instead of the
    start. Taken there, not at `until`, so results back-loaded in time order (a
    feed catching up, `monitor ingest` of a day) still continue it.

    `event_ids` are the events it applied, in order, so a caller can tell a history
    that still starts with exactly those events (else: replay from the start)."""

    state: PatientState
    covers: datetime
    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    state: PatientState
    findings: list[Finding]
    position: Position
    snapshot: Snapshot


def _step(state: PatientState, protocol: Protocol) -> PatientState:
    return state.with_findings(evaluate(state, protocol))


def _ticks(
    state: PatientState, limit: datetime, inclusive: bool, protocol: Protocol
) -> PatientState:
    checkpoint = next_checkpoint(state, state.now, protocol)
    while checkpoint is not None and (checkpoint < limit or (inclusive and checkpoint <= limit)):
        state = _step(state.at(checkpoint, Tick(checkpoint)), protocol)
        checkpoint = next_checkpoint(state, checkpoint, protocol)
    return state


def run(
    patient: Patient,
    events: Sequence[Event],
    until: datetime,
    protocol: Protocol,
    since: Snapshot | None = None,
) -> Run:
    """Evaluate the course from the start (or from `since`) up to and including `until`.

    Events must be in time order and not before the patient's start; events after
    `until` are not looked at. With `since`, `events` are only those after
    `since.covers` (the ones it has not seen), and `until` is not before it: the
    result is the one a run from the start over the whole history would give.
    """
    if since is None:
        state = _step(PatientState.enrolled(patient, Enrolled(patient.start)), protocol)
        applied: tuple[str, ...] = ()
        covers = patient.start
    else:
        if until < since.covers:
            raise ValueError(f"until {until} is before the snapshot ({since.covers})")
        state, applied, covers = since.state, since.event_ids, since.covers
    seen = list(applied)
    snapshot = since or Snapshot(state, covers, applied)
    for event in events:
        if event.at > until:
            break
        if event.at < state.now or (since is not None and event.at <= covers):
            raise ValueError(f"event {event.id} at {event.at} is out of order")
        state = _ticks(state, event.at, inclusive=False, protocol=protocol)
        state = _step(state.apply(event), protocol)
        seen.append(event.id)
        snapshot = Snapshot(state, state.now, tuple(seen))
    if until >= state.now:
        state = _ticks(state, until, inclusive=True, protocol=protocol)
    return Run(state, list(state.findings), position(state, until, protocol), snapshot)
