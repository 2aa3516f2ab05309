"""Titration guards: when the next 25 mg step is allowed, and doses outside the plan."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor.core.clinical import above, at_least, floor_tenth
from monitor.core.domain import DoseEvent, Enrolled, Finding
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState
from monitor.core.timeline import escalation, hold_reasons, max_dose, whole_days
from monitor.rules import rule
from monitor.rules.context import finding, fmt


def _dose_trigger(state: PatientState) -> tuple[str, float] | None:
    """(key, dose) when the trigger records a new daily dose (start, change or restart)."""
    trigger = state.trigger
    if isinstance(trigger, Enrolled):
        return "dose:start", state.dose_mg
    if isinstance(trigger, DoseEvent) and state.previous_dose_mg != trigger.dose_mg:
        return f"dose:{trigger.id}", trigger.dose_mg
    return None


@rule("titration.escalation_due")
def escalation_due(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    esc = escalation(state, now, protocol)
    if not esc.allowed or esc.next_dose_mg is None:
        return []
    limit = max_dose(state.patient, protocol)
    message = (
        f"Next dose step allowed: {fmt(state.dose_mg)} -> {fmt(esc.next_dose_mg)} mg/day "
        f"(maximum {fmt(limit)} mg/day): {whole_days(state.last_change_at, now)} days since the "
        "last dose change, normal LFTs since, no symptoms. For the clinician to decide."
    )
    key = f"{state.cycle_key}:{fmt(state.dose_mg)}mg"
    return [
        finding(
            state,
            protocol,
            "titration.escalation_due",
            "info",
            key,
            message,
            thresholds={"max_dose_mg": limit},
        )
    ]


@rule("titration.target_reached")
def target_reached(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    trig = _dose_trigger(state)
    limit = max_dose(state.patient, protocol)
    if trig is None or trig[1] < limit or _above_limit(state, trig[1], protocol)[0]:
        return []  # a dose over the limit is dose_above_limit's to say, not "reached"
    if state.previous_dose_mg is not None and state.previous_dose_mg >= limit:
        return []
    message = (
        f"Maintenance maximum reached: {fmt(trig[1])} mg/day (maximum {fmt(limit)} mg/day for "
        "this patient). No further escalation; keep monitoring LFTs."
    )
    return [
        finding(
            state,
            protocol,
            "titration.target_reached",
            "info",
            trig[0],
            message,
            thresholds={"max_dose_mg": limit},
        )
    ]


def _above_limit(
    state: PatientState, dose: float, protocol: Protocol
) -> tuple[list[str], dict[str, float]]:
    """Why `dose` is above this patient's maximum (empty when it is not)."""
    reasons: list[str] = []
    thresholds: dict[str, float] = {}
    per_kg = protocol.dosing.max_mg_per_kg * state.patient.weight_kg
    thresholds["mg_per_kg_limit"] = per_kg
    if above(dose, per_kg):
        reasons.append(
            f"more than {fmt(protocol.dosing.max_mg_per_kg)} mg/kg/day "
            f"({fmt(per_kg)} mg at {fmt(state.patient.weight_kg)} kg)"
        )
    toxic = state.patient.prior_toxic_dose_mg
    if protocol.dosing.below_prior_toxic_dose and toxic is not None:
        thresholds["prior_toxic_dose_mg"] = toxic
        if at_least(dose, toxic):
            reasons.append(f"not below the dose that caused hepatotoxicity ({fmt(toxic)} mg)")
    return reasons, thresholds


@rule("titration.dose_above_limit")
def dose_above_limit(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    trig = _dose_trigger(state)
    if trig is None:
        return []
    reasons, thresholds = _above_limit(state, trig[1], protocol)
    if not reasons:
        return []
    message = (
        f"Dose {fmt(trig[1])} mg/day is above this patient's maximum: {'; '.join(reasons)}. "
        f"Reduce to at most {fmt(max_dose(state.patient, protocol))} mg/day."
    )
    return [
        finding(
            state,
            protocol,
            "titration.dose_above_limit",
            "warning",
            trig[0],
            message,
            thresholds=thresholds,
        )
    ]


def _increase(state: PatientState) -> tuple[DoseEvent, float, datetime] | None:
    """(event, previous dose, previous change time) when the trigger is a dose increase."""
    trigger = state.trigger
    if not isinstance(trigger, DoseEvent) or state.previous_dose_mg is None:
        return None
    if trigger.dose_mg <= state.previous_dose_mg:
        return None
    changes = state.cycle_changes()
    previous_at = changes[-2].at if len(changes) >= 2 else state.cycle_start
    return trigger, state.previous_dose_mg, previous_at


@rule("titration.step_too_large")
def step_too_large(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    inc = _increase(state)
    if inc is None:
        return []
    event, previous, _ = inc
    step = event.dose_mg - previous
    if step <= protocol.dosing.step_mg:
        return []
    message = (
        f"Dose increased by {fmt(step)} mg in one step ({fmt(previous)} -> {fmt(event.dose_mg)} "
        f"mg/day); the protocol allows {fmt(protocol.dosing.step_mg)} mg per step. Review the dose."
    )
    return [
        finding(
            state,
            protocol,
            "titration.step_too_large",
            "warning",
            f"dose:{event.id}",
            message,
            thresholds={"step_mg": protocol.dosing.step_mg},
        )
    ]


@rule("titration.step_too_early")
def step_too_early(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    inc = _increase(state)
    if inc is None:
        return []
    event, _, previous_at = inc
    minimum = protocol.dosing.step_interval_min_days
    if event.at - previous_at >= timedelta(days=minimum):
        return []
    days = floor_tenth((event.at - previous_at) / timedelta(days=1))
    message = (
        f"Dose increased {fmt(days)} days after the previous dose change; the protocol "
        f"asks for at least {minimum} days between steps. Review the dose and check LFTs."
    )
    return [
        finding(
            state,
            protocol,
            "titration.step_too_early",
            "warning",
            f"dose:{event.id}",
            message,
            thresholds={"step_interval_min_days": minimum},
        )
    ]


@rule("titration.increase_during_hold")
def increase_during_hold(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    """A dose increase recorded while the monitor says hold: an unanswered warning,
    overdue LFTs, or active symptoms."""
    inc = _increase(state)
    if inc is None:
        return []
    event, previous, _ = inc
    reasons = hold_reasons(state, now, protocol)
    if not reasons:
        return []
    message = (
        f"Dose increased {fmt(previous)} -> {fmt(event.dose_mg)} mg/day while escalation is "
        f"on hold: {'; '.join(reasons)}. Review the dose with the clinician and check LFTs now."
    )
    return [
        finding(
            state,
            protocol,
            "titration.increase_during_hold",
            "warning",
            f"dose:{event.id}",
            message,
        )
    ]
