"""Which SMS a patient is due now (issue 14): a pure function of (schedule, contact,
history, now, config).

Reminders come from the patient's own liver-panel deadline (monitor/core/timeline.py):
`reminder_days_before` the due date. A recall goes out when the deadline's grace has
passed (the moment `lab.overdue` fires), a second `second_recall_after_days` later.
Symptom check-ins: weekly for the first `checkin_weeks` weeks of a cycle, and
`checkin_days_after_increase` days after each dose increase. Nothing is planned
outside the sending hours (site zone), nor more than one message a local day, nor
while consent is withdrawn or reminders are paused. Each planned message has a key
(patient, kind, date) so the writer stores it once however often the sweep runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PRIORITY = ("recall_second", "recall", "reminder", "checkin")


@dataclass(frozen=True)
class Policy:
    """[patient_sms] of the site config, as the planner needs it."""

    timezone: str = "UTC"
    send_from: time = time(9, 0)
    send_until: time = time(19, 0)
    reminder_days_before: int = 2
    second_recall_after_days: int = 3
    non_attendance_count: int = 2
    checkin_weeks: int = 12
    checkin_days_after_increase: int = 2
    checkin_stale_days: int = 2  # a check-in slot missed by this much is skipped


@dataclass(frozen=True)
class Schedule:
    """What the timeline says about this patient now (None: no panel is due)."""

    due: datetime | None
    overdue_at: datetime | None
    cycle_start: datetime
    increases: Sequence[datetime] = ()


@dataclass(frozen=True)
class Sent:
    kind: str
    key: str
    at: datetime


@dataclass(frozen=True)
class Planned:
    kind: str
    key: str
    due: date | None  # fills {date} in the template


def local(dt: datetime, policy: Policy) -> datetime:
    return dt.astimezone(ZoneInfo(policy.timezone))


def in_sending_hours(now: datetime, policy: Policy) -> bool:
    t = local(now, policy).time()
    return policy.send_from <= t < policy.send_until


def key_for(patient_id: str, kind: str, day: date) -> str:
    return f"{patient_id}:{kind}:{day.isoformat()}"


def _checkin_slots(schedule: Schedule, policy: Policy) -> list[date]:
    start = local(schedule.cycle_start, policy).date()
    slots = [start + timedelta(weeks=w) for w in range(1, policy.checkin_weeks + 1)]
    slots += [
        local(i, policy).date() + timedelta(days=policy.checkin_days_after_increase)
        for i in schedule.increases
    ]
    return sorted(set(slots))


def candidates(
    patient_id: str, schedule: Schedule, sent: Sequence[Sent], now: datetime, policy: Policy
) -> list[Planned]:
    """Every message due now, ignoring hours and the one-a-day limit (see `plan`)."""
    keys = {s.key for s in sent}
    today = local(now, policy).date()
    out: list[Planned] = []
    if schedule.due is not None and schedule.overdue_at is not None:
        due_day = local(schedule.due, policy).date()
        if now >= schedule.overdue_at:
            recall = key_for(patient_id, "recall", due_day)
            recall_at = next((s.at for s in sent if s.key == recall), None)
            if recall_at is None:
                out.append(Planned("recall", recall, due_day))
            elif now >= recall_at + timedelta(days=policy.second_recall_after_days):
                out.append(
                    Planned("recall_second", key_for(patient_id, "recall_second", due_day), due_day)
                )
        elif today >= due_day - timedelta(days=policy.reminder_days_before) and now < schedule.due:
            out.append(Planned("reminder", key_for(patient_id, "reminder", due_day), due_day))
    for slot in _checkin_slots(schedule, policy):
        if slot <= today < slot + timedelta(days=policy.checkin_stale_days):
            out.append(Planned("checkin", key_for(patient_id, "checkin", slot), None))
    return [p for p in out if p.key not in keys]


def plan(
    patient_id: str,
    schedule: Schedule,
    consent: bool,
    paused_until: datetime | None,
    sent: Sequence[Sent],
    now: datetime,
    policy: Policy,
) -> Planned | None:
    """The one message to send now, or None (no consent, paused, out of hours, one
    already sent today, nothing due). Recalls before reminders before check-ins."""
    if not consent or (paused_until is not None and paused_until > now):
        return None
    if not in_sending_hours(now, policy):
        return None
    today = local(now, policy).date()
    if any(local(s.at, policy).date() == today for s in sent if s.kind in PRIORITY):
        return None
    due = candidates(patient_id, schedule, sent, now, policy)
    due.sort(key=lambda p: PRIORITY.index(p.kind))
    return due[0] if due else None


def missed_panels(sent: Sequence[Sent]) -> int:
    """How many distinct deadlines reached a recall: the non-attendance count."""
    return len({s.key.rsplit(":", 1)[1] for s in sent if s.kind == "recall"})


def repeated_non_attendance(sent: Sequence[Sent], policy: Policy) -> bool:
    return missed_panels(sent) >= policy.non_attendance_count
