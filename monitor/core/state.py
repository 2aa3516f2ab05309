"""A patient's state at one moment of their course, as the rules see it.

The engine builds a new `PatientState` for every step (event or tick); rules only
read it. Helpers here answer the questions several rules share: which symptoms
count now, which panel is under review, which ULN and baseline apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.core.domain import (
    DoseEvent,
    Event,
    Finding,
    LabEvent,
    Patient,
    SymptomEvent,
    Trigger,
)
from monitor.core.memo import IdentityMemo
from monitor.core.protocol import Protocol
from monitor.core.units import ANALYTES

_PANELS: IdentityMemo[tuple[LabEvent, ...]] = IdentityMemo()
_UNDER_REVIEW: IdentityMemo[tuple[PanelView, ...]] = IdentityMemo()


@dataclass(frozen=True)
class DoseChange:
    at: datetime
    from_mg: float
    to_mg: float
    event_id: str

    @property
    def is_increase(self) -> bool:
        return self.to_mg > self.from_mg


def replace(state: PatientState, **changes: Any) -> PatientState:
    """`dataclasses.replace` without its per-call field introspection (the engine
    makes a state per step; PatientState has no __post_init__ to re-run)."""
    assert changes.keys() <= state.__dict__.keys(), f"no such field: {set(changes)}"
    new = object.__new__(PatientState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


@dataclass(frozen=True)
class PatientState:
    patient: Patient
    now: datetime
    trigger: Trigger
    on_therapy: bool
    cycle_start: datetime
    cycle_key: str
    dose_mg: float
    previous_dose_mg: float | None
    last_change_at: datetime
    dose_changes: tuple[DoseChange, ...] = ()
    labs: tuple[LabEvent, ...] = ()  # in time order (the engine applies events so)
    symptom_reports: tuple[SymptomEvent, ...] = ()
    findings: tuple[Finding, ...] = ()
    stopped_at: datetime | None = None

    @classmethod
    def enrolled(cls, patient: Patient, trigger: Trigger) -> PatientState:
        return cls(
            patient=patient,
            now=patient.start,
            trigger=trigger,
            on_therapy=True,
            cycle_start=patient.start,
            cycle_key="start",
            dose_mg=patient.start_dose_mg,
            previous_dose_mg=None,
            last_change_at=patient.start,
        )

    def at(self, now: datetime, trigger: Trigger) -> PatientState:
        return replace(self, now=now, trigger=trigger)

    def with_findings(self, new: list[Finding]) -> PatientState:
        stopped = any(f.is_stop for f in new)
        return replace(
            self,
            findings=self.findings + tuple(new),
            on_therapy=self.on_therapy and not stopped,
            stopped_at=(self.stopped_at if not stopped or not self.on_therapy else new[0].at),
        )

    def apply(self, event: Event) -> PatientState:
        """The state just after `event`, before any rule has looked at it."""
        from monitor.core.domain import StopEvent

        s = self.at(event.at, event)
        if isinstance(event, LabEvent):
            return replace(s, labs=(*s.labs, event))
        if isinstance(event, SymptomEvent):
            return replace(s, symptom_reports=(*s.symptom_reports, event))
        if isinstance(event, StopEvent):
            return replace(
                s,
                on_therapy=False,
                stopped_at=s.stopped_at if not s.on_therapy else event.at,
                previous_dose_mg=None,
            )
        assert isinstance(event, DoseEvent)
        if not s.on_therapy:
            return replace(
                s,
                on_therapy=True,
                cycle_start=event.at,
                cycle_key=f"restart:{event.id}",
                dose_mg=event.dose_mg,
                previous_dose_mg=None,
                last_change_at=event.at,
                stopped_at=None,
            )
        if event.dose_mg == s.dose_mg:
            return replace(s, previous_dose_mg=s.dose_mg)
        change = DoseChange(event.at, s.dose_mg, event.dose_mg, event.id)
        return replace(
            s,
            dose_mg=event.dose_mg,
            previous_dose_mg=s.dose_mg,
            last_change_at=event.at,
            dose_changes=(*s.dose_changes, change),
        )

    # --- questions rules share -------------------------------------------------

    def cycle_changes(self) -> tuple[DoseChange, ...]:
        return tuple(c for c in self.dose_changes if c.at >= self.cycle_start)

    def last_increase(self, before: datetime | None = None) -> DoseChange | None:
        for change in reversed(self.dose_changes):
            if change.is_increase and (before is None or change.at <= before):
                return change
        return None

    def panels(self) -> tuple[LabEvent, ...]:
        """Liver panels (labs with ALT or AST) of the current (re)start cycle. Asked
        several times a step, so computed once per (labs, cycle start): a long history
        would otherwise be rescanned by every rule at every step."""
        labs, start = self.labs, self.cycle_start
        return _PANELS.get(
            (labs, start),
            lambda: tuple([lab for lab in labs if lab.at >= start and lab.is_liver_panel]),
        )

    def latest_panel(self) -> LabEvent | None:
        panels = self.panels()
        return panels[-1] if panels else None

    def active_symptoms(self, at: datetime, protocol: Protocol) -> frozenset[str]:
        window = timedelta(days=protocol.symptoms.active_days)
        active: set[str] = set()
        for report in self.symptom_reports:
            if report.at > at:
                break
            if report.resolved:
                active.clear()
            if report.at > at - window:
                active |= report.symptoms
            else:
                active -= report.symptoms
        return frozenset(active)

    def symptom_expiries(self, protocol: Protocol) -> list[datetime]:
        window = timedelta(days=protocol.symptoms.active_days)
        return [r.at + window for r in self.symptom_reports if r.symptoms]

    def fired(self, rule: str, key: str) -> bool:
        return any(f.rule == rule and f.key == key for f in self.findings)

    def findings_for_event(self, event_id: str) -> list[Finding]:
        return [f for f in self.findings if f.event_id == event_id]


def uln_for(analyte: str, patient: Patient, lab: LabEvent | None, protocol: Protocol) -> float:
    """The result's own reference range wins, then the patient's ULN, then the profile's."""
    if lab is not None and analyte in lab.uln:
        return lab.uln[analyte]
    if analyte in patient.uln:
        return patient.uln[analyte]
    return protocol.default_uln[analyte]


@dataclass(frozen=True)
class PanelView:
    """A liver panel under review, with the values and symptoms it is taken with.

    `own` are the values of the lab result itself; `merged` adds the latest values of
    other analytes drawn within the profile's combine window (separate messages of
    one draw), for the rules that combine analytes (bilirubin with transaminases).
    """

    lab: LabEvent
    at: datetime
    own: Mapping[str, float]
    merged: Mapping[str, float]
    uln: Mapping[str, float]
    symptoms: frozenset[str]
    via_symptoms: bool


def _merged(
    state: PatientState, lab: LabEvent, protocol: Protocol
) -> tuple[dict[str, float], dict[str, float]]:
    window = timedelta(hours=protocol.combine_within_hours)
    values: dict[str, float] = {}
    ulns: dict[str, float] = {}
    earliest = lab.at - window
    for other in reversed(state.labs):  # newest first, back to the window's start
        if other.at < earliest:
            break
        if other.id == lab.id or other.at > lab.at:
            continue
        for analyte, value in other.results.items():
            if analyte not in values:  # the latest value of each analyte wins
                values[analyte] = value
                ulns[analyte] = uln_for(analyte, state.patient, other, protocol)
    for analyte, value in lab.results.items():
        values[analyte] = value
        ulns[analyte] = uln_for(analyte, state.patient, lab, protocol)
    for analyte in ANALYTES:
        if analyte not in ulns:
            ulns[analyte] = uln_for(analyte, state.patient, None, protocol)
    return values, ulns


def panels_under_review(state: PatientState, protocol: Protocol) -> tuple[PanelView, ...]:
    """`_panels_under_review`, once per (state, profile): every lab rule of a step asks."""
    return _UNDER_REVIEW.get(
        (state, protocol), lambda: tuple(_panels_under_review(state, protocol))
    )


def _panels_under_review(state: PatientState, protocol: Protocol) -> list[PanelView]:
    """The panels the current trigger asks the lab rules to judge, oldest first.

    A lab result is judged with the symptoms that count at its draw. A symptom
    report re-evaluates every liver panel of the cycle drawn in the window before it
    (replay contract: a panel is taken together with every report arriving within 7
    days after it).
    """
    trigger = state.trigger
    if isinstance(trigger, LabEvent):
        merged, ulns = _merged(state, trigger, protocol)
        return [
            PanelView(
                lab=trigger,
                at=trigger.at,
                own=dict(trigger.results),
                merged=merged,
                uln=ulns,
                symptoms=state.active_symptoms(trigger.at, protocol),
                via_symptoms=False,
            )
        ]
    if isinstance(trigger, SymptomEvent) and trigger.symptoms:
        window = timedelta(days=protocol.symptoms.reevaluate_panel_within_days)
        views = []
        for panel in state.panels():
            if not timedelta(0) <= trigger.at - panel.at < window:
                continue
            merged, ulns = _merged(state, panel, protocol)
            views.append(
                PanelView(
                    lab=panel,
                    at=trigger.at,
                    own=dict(panel.results),
                    merged=merged,
                    uln=ulns,
                    symptoms=state.active_symptoms(trigger.at, protocol),
                    via_symptoms=True,
                )
            )
        return views
    return []
