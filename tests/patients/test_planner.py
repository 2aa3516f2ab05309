"""The patient-SMS planner over generated schedules, with a pinned clock stepping
through the days as the sweep would: reminders N days before the due date, recalls
once overdue and again N days later, check-ins on their slots, only in sending
hours, never two in one local day, never the same message twice."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.patient_contact import (
    Planned,
    Policy,
    Schedule,
    Sent,
    local,
    plan,
    repeated_non_attendance,
)

POLICY = Policy(timezone="Europe/London", send_from=time(9), send_until=time(19))
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def simulate(schedule: Schedule, policy: Policy, days: int, step_minutes: int = 30) -> list[Sent]:
    sent: list[Sent] = []
    now = schedule.cycle_start
    end = now + timedelta(days=days)
    while now < end:
        p: Planned | None = plan("P-1", schedule, True, None, sent, now, policy)
        if p is not None:
            sent.append(Sent(p.kind, p.key, now))
        now += timedelta(minutes=step_minutes)
    return sent


schedules = st.builds(
    lambda start_h, gap, grace: Schedule(
        due=START + timedelta(hours=start_h, days=gap),
        overdue_at=START + timedelta(hours=start_h, days=gap + grace),
        cycle_start=START + timedelta(hours=start_h),
    ),
    st.integers(0, 23),
    st.integers(3, 28),
    st.integers(0, 3),
)


@settings(max_examples=40, deadline=None)
@given(schedule=schedules, before=st.integers(1, 3), second=st.integers(1, 5))
def test_reminder_and_recalls_follow_the_schedule(
    schedule: Schedule, before: int, second: int
) -> None:
    policy = Policy(
        timezone="Europe/London", reminder_days_before=before, second_recall_after_days=second,
        checkin_weeks=0,
    )  # fmt: skip
    assert schedule.due is not None and schedule.overdue_at is not None
    sent = simulate(schedule, policy, days=40)
    kinds = [s.kind for s in sent]
    assert len(set(s.key for s in sent)) == len(sent)  # never the same message twice
    days = [local(s.at, policy).date() for s in sent]
    assert len(set(days)) == len(days)  # one a day
    assert all(time(9) <= local(s.at, policy).time() < time(19) for s in sent)
    due_day = local(schedule.due, policy).date()
    reminders = [s for s in sent if s.kind == "reminder"]
    if reminders:
        r = reminders[0]
        assert local(r.at, policy).date() >= due_day - timedelta(days=before)
        assert r.at < schedule.due
    elif schedule.due - schedule.cycle_start > timedelta(days=before + 1):
        raise AssertionError("a reminder was due in sending hours and none went")
    assert kinds.count("recall") == 1 and kinds.count("recall_second") == 1
    recall = next(s for s in sent if s.kind == "recall")
    second_at = next(s.at for s in sent if s.kind == "recall_second")
    assert recall.at >= schedule.overdue_at
    # the first sending-hours tick on or after overdue (or the next day if one went today)
    assert recall.at - schedule.overdue_at < timedelta(days=2)
    assert second_at >= recall.at + timedelta(days=second)
    assert second_at - (recall.at + timedelta(days=second)) < timedelta(days=1)


def test_sending_hours_are_the_site_zone() -> None:
    """09:00 London in summer is 08:00 UTC: nothing at 07:59 UTC, the reminder at 08:00."""
    due = datetime(2026, 7, 3, 12, 0, tzinfo=UTC)
    s = Schedule(due=due, overdue_at=due + timedelta(days=1), cycle_start=due - timedelta(days=7))
    p = Policy(timezone="Europe/London", reminder_days_before=2, checkin_weeks=0)
    assert plan("P-1", s, True, None, [], datetime(2026, 7, 1, 7, 59, tzinfo=UTC), p) is None
    got = plan("P-1", s, True, None, [], datetime(2026, 7, 1, 8, 0, tzinfo=UTC), p)
    assert got is not None and got.kind == "reminder" and got.due == due.date()
    assert plan("P-1", s, True, None, [], datetime(2026, 7, 1, 18, 0, tzinfo=UTC), p) is None


def test_one_a_day_and_recall_first() -> None:
    due = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    s = Schedule(due=due, overdue_at=due, cycle_start=datetime(2026, 3, 3, 7, tzinfo=UTC))
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # day 7: a check-in slot, and overdue
    first = plan("P-1", s, True, None, [], now, POLICY)
    assert first is not None and first.kind == "recall"
    sent = [Sent(first.kind, first.key, now)]
    assert plan("P-1", s, True, None, sent, now + timedelta(hours=3), POLICY) is None
    nxt = plan("P-1", s, True, None, sent, now + timedelta(days=1), POLICY)
    assert nxt is not None and nxt.kind == "checkin"  # the slot is still fresh the next day


def test_no_consent_or_paused_means_nothing() -> None:
    due = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    s = Schedule(due=due, overdue_at=due, cycle_start=due - timedelta(days=3))
    now = due + timedelta(hours=1)
    assert plan("P-1", s, True, None, [], now, POLICY) is not None
    assert plan("P-1", s, False, None, [], now, POLICY) is None
    assert plan("P-1", s, True, now + timedelta(days=3), [], now, POLICY) is None
    assert plan("P-1", s, True, now - timedelta(minutes=1), [], now, POLICY) is not None


def test_checkins_weekly_then_after_an_increase() -> None:
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)
    increase = start + timedelta(days=100)
    s = Schedule(due=None, overdue_at=None, cycle_start=start, increases=[increase])
    sent = simulate(s, Policy(timezone="Europe/London", checkin_weeks=12), days=110)
    london = ZoneInfo("Europe/London")
    days = [(s.at.astimezone(london).date() - start.date()).days for s in sent]
    assert days == [7 * w for w in range(1, 13)] + [102]
    assert {x.kind for x in sent} == {"checkin"}


def test_repeated_non_attendance_counts_distinct_missed_panels() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    one = [
        Sent("recall", "P-1:recall:2026-03-01", at),
        Sent("recall_second", "P-1:recall_second:2026-03-01", at),
    ]
    assert not repeated_non_attendance(one, Policy(non_attendance_count=2))
    two = [*one, Sent("recall", "P-1:recall:2026-03-20", at)]
    assert repeated_non_attendance(two, Policy(non_attendance_count=2))
