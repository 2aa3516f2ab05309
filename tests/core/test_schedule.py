"""The monitoring schedule through every phase, after increases, stops and restarts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from monitor.core.timeline import deadline, max_dose
from tests.helpers import BSR, Seq, day, patient, rules_fired, run_events


def overdue_times(result) -> list:  # type: ignore[no-untyped-def]
    return [f.at for f in result.findings if f.rule == "lab.overdue"]


def test_first_two_weeks_twice_weekly_with_one_day_grace() -> None:
    result = run_events([], until=day(5))
    assert overdue_times(result) == [day(5)]  # due day 4 + 1 day grace, from the start


def test_overdue_not_raised_before_grace_ends() -> None:
    result = run_events([], until=day(5) - timedelta(seconds=1))
    assert overdue_times(result) == []


def test_overdue_fires_once_per_missed_deadline() -> None:
    result = run_events([], until=day(60))
    assert overdue_times(result) == [day(5)]


def test_new_panel_starts_the_next_cycle() -> None:
    s = Seq()
    result = run_events([s.lab(day(6), alt=20.0)], until=day(12))
    assert overdue_times(result) == [day(5), day(11)]


def test_panel_exactly_at_grace_end_is_in_time() -> None:
    s = Seq()
    result = run_events([s.lab(day(5), alt=20.0)], until=day(6))
    assert overdue_times(result) == []


@pytest.mark.parametrize(
    ("panel_day", "gap", "grace"),
    [(0, 4, 1), (13, 4, 1), (14, 7, 2), (27, 7, 2), (28, 14, 3), (89, 14, 3)],
)
def test_row_chosen_by_day_of_latest_panel(panel_day: int, gap: int, grace: int) -> None:
    s = Seq()
    result = run_events([s.lab(day(panel_day, 1), alt=20.0)], until=day(panel_day, 1))
    dl = deadline(result.state, __import__("tests.helpers", fromlist=["SEED"]).SEED)
    assert dl is not None
    assert dl.due == day(panel_day, 1) + timedelta(days=gap)
    assert dl.grace == timedelta(days=grace)


def _monthly_patient_events(s: Seq, extra: list | None = None) -> list:  # type: ignore[type-arg]
    events = [s.lab(day(d, 1), alt=20.0) for d in (3, 6, 10, 13, 17, 24, 31, 45, 59, 73, 87)]
    return events + (extra or [])


def test_after_three_months_stable_goes_monthly() -> None:
    from tests.helpers import SEED

    s = Seq()
    events = _monthly_patient_events(s, [s.lab(day(95), alt=20.0)])
    result = run_events(events, until=day(95))
    dl = deadline(result.state, SEED)
    assert dl is not None and dl.stable is True
    assert dl.due == day(95) + timedelta(days=31)
    assert dl.grace == timedelta(days=7)
    assert overdue_times(run_events(events, until=day(95 + 38))) == [day(95 + 38)]


def test_after_three_months_not_stable_stays_two_weekly() -> None:
    from tests.helpers import SEED

    s = Seq()
    events = _monthly_patient_events(s, [s.lab(day(80), alt=40.0), s.lab(day(95), alt=20.0)])
    events.sort(key=lambda e: e.at)
    result = run_events(events, until=day(95))
    dl = deadline(result.state, SEED)
    assert dl is not None and dl.stable is False  # warn.transaminase_elevated on day 80
    assert dl.due == day(95) + timedelta(days=14)


def test_dose_increase_caps_the_gap_at_14_days_for_42_days() -> None:
    from tests.helpers import SEED

    s = Seq()
    events = _monthly_patient_events(s, [s.lab(day(95), alt=20.0), s.dose(day(100), 75.0)])
    result = run_events(events, until=day(100))
    dl = deadline(result.state, SEED)
    assert dl is not None and dl.post_increase
    assert dl.due == day(100) + timedelta(days=14)


def test_stop_silences_deadlines_until_restart_which_resets_to_twice_weekly() -> None:
    s = Seq()
    events = [s.lab(day(3), alt=20.0), s.stop(day(5)), s.dose(day(40), 50.0)]
    result = run_events(events, until=day(46))
    assert overdue_times(result) == [day(45)]  # nothing while stopped; restart + 4 + 1
    assert result.position.phase.startswith("days 0-13")


def test_stop_alert_stops_therapy_like_a_stop_event() -> None:
    s = Seq()
    events = [s.lab(day(3), alt=600.0)]
    result = run_events(events, until=day(90))
    assert rules_fired(result) == ["stop.transaminase"]
    assert not result.position.on_therapy


def test_bsr_schedule_counts_from_the_last_dose_change() -> None:
    s = Seq()
    result = run_events([s.lab(day(50, 1), alt=20.0)], until=day(50, 1), protocol=BSR)
    dl = deadline(result.state, BSR)
    assert dl is not None and dl.due == day(50, 1) + timedelta(days=31)
    s = Seq()
    events = [s.lab(day(50, 1), alt=20.0), s.dose(day(55), 75.0)]
    result = run_events(events, until=day(55), protocol=BSR)
    dl = deadline(result.state, BSR)
    assert dl is not None and dl.due == day(55) + timedelta(days=14)


@pytest.mark.parametrize(
    ("weight", "toxic", "expected"),
    [
        (62.0, 100.0, 75.0),
        (62.0, None, 75.0),
        (100.0, 125.0, 100.0),
        (100.0, None, 150.0),
        (40.0, 150.0, 50.0),
        (70.0, 110.0, 100.0),
    ],
)
def test_max_dose_is_lower_of_mg_per_kg_and_below_toxic(
    weight: float, toxic: float | None, expected: float
) -> None:
    from tests.helpers import SEED

    assert max_dose(patient(weight_kg=weight, prior_toxic_dose_mg=toxic), SEED) == expected


@freeze_time("2031-07-01 12:00:00")
def test_engine_ignores_the_wall_clock() -> None:
    """Time is an argument: freezing the wall clock elsewhere changes nothing."""
    s = Seq()
    result = run_events([s.lab(day(3), alt=20.0)], until=day(9))
    assert overdue_times(result) == [day(8)]
    assert result.position.next_due == day(7)
