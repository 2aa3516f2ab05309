"""Where a patient stands on the protocol's timeline: a pure function of (state, now).

The monitoring schedule, the next liver-panel deadline and its grace, the maximum
dose and whether the next titration step is allowed all come from here, for the
rules, the daemon's deadline index, `monitor patients` and replay alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.core.domain import Finding, Patient
from monitor.core.memo import IdentityMemo
from monitor.core.panel import obstacles
from monitor.core.protocol import Protocol, ScheduleRow
from monitor.core.state import PatientState

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def mg_per_kg_cap(patient: Patient, protocol: Protocol) -> float:
    """The profile's mg/kg/day cap; its reduced cap for an intermediate TPMT/NUDT15
    metaboliser (CPIC: a reduced dose)."""
    cap = protocol.dosing.max_mg_per_kg
    if patient.metaboliser == "intermediate":
        cap = min(cap, protocol.pharmacogenomics.intermediate_max_mg_per_kg)
    return cap


def max_dose(patient: Patient, protocol: Protocol) -> float:
    """The lower of the mg/kg cap (down to a step) and the largest step below the toxic dose."""
    step = protocol.dosing.step_mg
    limit = math.floor(mg_per_kg_cap(patient, protocol) * patient.weight_kg / step + 1e-9) * step
    toxic = patient.prior_toxic_dose_mg
    if protocol.dosing.below_prior_toxic_dose and toxic is not None:
        limit = min(limit, math.ceil(toxic / step - 1e-9) * step - step)
    return max(limit, 0.0)


def whole_days(since: datetime, until: datetime) -> int:
    return math.floor((until - since) / DAY)


@dataclass(frozen=True)
class Deadline:
    """When the next liver panel is due, and when `lab.overdue` fires if none comes."""

    anchor_at: datetime
    anchor_key: str
    due: datetime
    grace: timedelta
    day: int
    stable: bool | None
    row: ScheduleRow
    post_increase: bool
    # The warning whose request for repeat LFTs set this due time (None: the schedule).
    asked_by: Finding | None = None

    @property
    def fire_at(self) -> datetime:
        return self.due + self.grace


def is_stable(state: PatientState, at: datetime, protocol: Protocol) -> bool:
    """No dose change and no warn/stop alert in the stability window before `at`."""
    window = protocol.schedule.stable_window_days
    assert window is not None
    since = at - timedelta(days=window)
    if any(since < c.at <= at for c in state.dose_changes):
        return False
    return not any(
        since < f.at <= at and f.rule.startswith(("warn.", "stop.")) for f in state.findings
    )


_DEADLINES: IdentityMemo[Deadline] = IdentityMemo()


def deadline(state: PatientState, protocol: Protocol) -> Deadline | None:
    """The current deadline; None while therapy is stopped.

    Asked several times per engine step (the overdue rule, the next checkpoint, the
    position), and a step's state shares its history tuples with the one before it:
    the answer is memoised on exactly what it reads, by identity (the entry holds
    them, so an id is not reused while cached)."""
    if not state.on_therapy:
        return None
    parts: tuple[object, ...] = (state.labs, state.dose_changes, state.findings)
    parts += (state.cycle_start, state.cycle_key, protocol)
    return _DEADLINES.get(parts, lambda: _deadline(state, protocol))


def _deadline(state: PatientState, protocol: Protocol) -> Deadline:
    sched = protocol.schedule
    panel = state.latest_panel()
    anchor_at = panel.at if panel else state.cycle_start
    anchor_key = f"panel:{panel.id}" if panel else state.cycle_key
    changes = state.cycle_changes()

    if sched.clock == "restart":
        origin = state.cycle_start
    else:
        before = [c.at for c in changes if c.at <= anchor_at]
        origin = before[-1] if before else state.cycle_start
    day = whole_days(origin, anchor_at)
    row = sched.row_for_day(day)
    gap, grace, stable = row.gap_days, row.grace_days, None
    if row.stable_gap_days is not None and row.stable_grace_days is not None:
        stable = is_stable(state, anchor_at, protocol)
        if stable:
            gap, grace = row.stable_gap_days, row.stable_grace_days
    due = anchor_at + timedelta(days=gap)
    grace_td = timedelta(days=grace)
    post_increase = False

    if sched.clock == "restart" and sched.post_increase_window_days is not None:
        assert sched.post_increase_max_gap_days is not None
        assert sched.post_increase_grace_days is not None
        window = timedelta(days=sched.post_increase_window_days)
        for change in changes:
            if change.is_increase and change.at + window > anchor_at:
                capped = max(anchor_at, change.at) + timedelta(
                    days=sched.post_increase_max_gap_days
                )
                if capped < due:
                    due, grace_td, post_increase = (
                        capped,
                        timedelta(days=sched.post_increase_grace_days),
                        True,
                    )
    elif sched.clock == "dose_change":
        first = sched.rows[0]
        for change in changes:
            if change.at > anchor_at:
                capped = change.at + timedelta(days=first.gap_days)
                if capped < due:
                    due, grace_td, post_increase = capped, timedelta(days=first.grace_days), True
    asked_by: Finding | None = None
    for request in repeat_requests(state):
        assert request.repeat_by is not None and request.repeat_grace is not None
        if request.repeat_by < due:
            due, grace_td, asked_by = request.repeat_by, request.repeat_grace, request
    if asked_by is not None:
        # Its own key: a missed repeat fires once, and the schedule's deadline of the
        # same panel is later, so it never fires a second time for that panel.
        anchor_key = f"repeat:{asked_by.rule}:{asked_by.key}"
    return Deadline(anchor_at, anchor_key, due, grace_td, day, stable, row, post_increase, asked_by)


def repeat_requests(state: PatientState) -> list[Finding]:
    """Warnings of this cycle asking for repeat LFTs that no liver panel has answered yet.

    A request is answered by a liver panel drawn at or after it, other than the panel
    the warning is about.
    """
    panel = state.latest_panel()
    return [
        f
        for f in state.findings
        if f.repeat_by is not None
        and f.at >= state.cycle_start
        and (panel is None or panel.at < f.at or panel.id == f.event_id)
    ]


def hold_reasons(state: PatientState, now: datetime, protocol: Protocol) -> list[str]:
    """What holds dose escalation now: an unanswered warning, overdue LFTs, symptoms."""
    reasons = [
        f"{f.rule} on {f.at:%Y-%m-%d} asked for repeat LFTs first" for f in repeat_requests(state)
    ]
    dl = deadline(state, protocol)
    if dl is not None and now >= dl.fire_at:
        reasons.append(f"liver tests are overdue (due {dl.due:%Y-%m-%d %H:%M} UTC)")
    symptoms = state.active_symptoms(now, protocol)
    if symptoms:
        reasons.append(f"symptoms active ({', '.join(sorted(symptoms))})")
    return reasons


@dataclass(frozen=True)
class Escalation:
    allowed: bool
    reason: str
    next_dose_mg: float | None


def escalation(state: PatientState, now: datetime, protocol: Protocol) -> Escalation:
    """Whether the next titration step may be taken now, and if not, why not."""
    if not state.on_therapy:
        return Escalation(False, "therapy is stopped", None)
    patient = state.patient
    if patient.metaboliser == "poor" and not protocol.pharmacogenomics.poor_escalation_reminders:
        genes = " and ".join(
            g for g, v in (("TPMT", patient.tpmt), ("NUDT15", patient.nudt15)) if v == "poor"
        )
        return Escalation(
            False,
            f"{genes} poor metaboliser: no escalation reminders "
            f"({protocol.poor_metaboliser_advice})",
            None,
        )
    step = protocol.dosing.step_mg
    limit = max_dose(state.patient, protocol)
    nxt = state.dose_mg + step
    if nxt > limit:
        return Escalation(
            False, f"the next step ({nxt:g} mg) would exceed the maximum ({limit:g} mg)", None
        )
    waited = now - state.last_change_at
    needed = timedelta(days=protocol.dosing.step_interval_min_days)
    if waited < needed:
        return Escalation(
            False,
            f"only {whole_days(state.last_change_at, now)} of "
            f"{protocol.dosing.step_interval_min_days} days since the last dose change",
            nxt,
        )
    panels = state.panels()  # in time order: the last one tells if any is since
    if not panels or panels[-1].at < state.last_change_at:
        return Escalation(False, "no liver panel since the last dose change", nxt)
    latest = panels[-1]
    raised = sorted(
        {
            f.rule
            for f in state.findings_for_event(latest.id)
            if f.rule.startswith(("warn.", "stop."))
        }
    )
    standing = [o.text for o in obstacles(state, state.last_change_at, protocol)]
    if raised or standing:
        why = standing or [f"it raised {', '.join(raised)}"]
        return Escalation(
            False,
            f"the results since the last dose change are not normal: {'; '.join(why)}",
            nxt,
        )
    symptoms = state.active_symptoms(now, protocol)
    if symptoms:
        return Escalation(False, f"symptoms active: {', '.join(sorted(symptoms))}", nxt)
    dl = deadline(state, protocol)
    if dl is not None and now >= dl.fire_at:
        return Escalation(False, "liver tests are overdue", nxt)
    return Escalation(True, f"may step up to {nxt:g} mg/day", nxt)


def next_checkpoint(state: PatientState, after: datetime, protocol: Protocol) -> datetime | None:
    """The first moment after `after` when time alone may make a rule fire."""
    candidates: list[datetime] = []
    dl = deadline(state, protocol)
    if dl is not None and not state.fired("lab.overdue", dl.anchor_key):
        candidates.append(dl.fire_at)
    if state.on_therapy:
        candidates.append(
            state.last_change_at + timedelta(days=protocol.dosing.step_interval_min_days)
        )
        candidates.extend(state.symptom_expiries(protocol))
    later = [c for c in candidates if c > after]
    return min(later) if later else None


@dataclass(frozen=True)
class Position:
    """A patient's place on the timeline, for people (`monitor patients`) and the daemon."""

    on_therapy: bool
    phase: str
    day: int
    dose_mg: float | None
    max_dose_mg: float
    last_panel_at: datetime | None
    next_due: datetime | None
    grace_days: float | None
    overdue: bool
    escalation_allowed: bool
    escalation_reason: str
    stable: bool | None
    next_check_at: datetime | None


def phase_label(row: ScheduleRow, protocol: Protocol, stable: bool | None) -> str:
    rows = protocol.schedule.rows
    idx = rows.index(row)
    clock = "restart" if protocol.schedule.clock == "restart" else "dose change"
    span = (
        f"days {row.from_day}-{rows[idx + 1].from_day - 1}"
        if idx + 1 < len(rows)
        else f"day {row.from_day}+"
    )
    suffix = "" if stable is None else (", stable" if stable else ", not stable")
    return f"{span} since {clock}{suffix}"


def position(state: PatientState, now: datetime, protocol: Protocol) -> Position:
    dl = deadline(state, protocol)
    esc = escalation(state, now, protocol)
    panel = state.latest_panel()
    limit = max_dose(state.patient, protocol)
    if dl is None:
        return Position(
            on_therapy=False,
            phase="stopped",
            day=whole_days(state.cycle_start, now),
            dose_mg=None,
            max_dose_mg=limit,
            last_panel_at=panel.at if panel else None,
            next_due=None,
            grace_days=None,
            overdue=False,
            escalation_allowed=False,
            escalation_reason=esc.reason,
            stable=None,
            next_check_at=None,
        )
    current_row = protocol.schedule.row_for_day(
        whole_days(
            state.cycle_start if protocol.schedule.clock == "restart" else state.last_change_at,
            now,
        )
    )
    return Position(
        on_therapy=True,
        phase=phase_label(current_row, protocol, dl.stable),
        day=whole_days(state.cycle_start, now),
        dose_mg=state.dose_mg,
        max_dose_mg=limit,
        last_panel_at=panel.at if panel else None,
        next_due=dl.due,
        grace_days=dl.grace / DAY,
        overdue=now >= dl.fire_at,
        escalation_allowed=esc.allowed,
        escalation_reason=esc.reason,
        stable=dl.stable,
        next_check_at=next_checkpoint(state, now, protocol),
    )
