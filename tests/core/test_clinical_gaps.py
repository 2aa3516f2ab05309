"""Issue 9: cholestatic panels, repeat-test deadlines, held values, TPMT-poor patients."""

from __future__ import annotations

from monitor.core.domain import LabEvent
from monitor.core.timeline import escalation
from tests.helpers import SEED, Seq, day, rules_fired, run_events


def test_cholestatic_panel_after_increase_warns_and_gives_no_escalation() -> None:
    s = Seq()
    events = [
        s.lab(day(3), alt=25, ast=21),
        s.dose(day(7), 75),
        # ALP 2.6x ULN, bilirubin 1.6x ULN, ALT/AST normal (R about 0.29).
        s.lab(day(10), alt=25, ast=22, alp=312, bilirubin=33.6),
    ]
    result = run_events(events, until=day(20))
    fired = rules_fired(result)
    assert "warn.cholestatic" in fired
    assert all(f.at < day(10) for f in result.findings if f.rule == "titration.escalation_due")
    chol = next(f for f in result.findings if f.rule == "warn.cholestatic")
    assert "cholestatic" in chol.message and "R 0.29" in chol.message


def test_bilirubin_alone_raised_warns() -> None:
    s = Seq()
    result = run_events([s.lab(day(3), alt=25, ast=21, bilirubin=1.9 * 21)], until=day(3))
    assert "warn.cholestatic" in rules_fired(result)


def test_missed_repeat_after_warning_fires_one_overdue_at_its_deadline() -> None:
    s = Seq()
    result = run_events([s.lab(day(30), alt=40, ast=21)], until=day(50))
    overdue = [f for f in result.findings if f.rule == "lab.overdue" and f.at > day(30)]
    assert len(overdue) == 1
    # repeat within 5 days, grace 1 day (seed profile), before the 14-day schedule
    assert overdue[0].at == day(36) and "warn.transaminase_elevated" in overdue[0].message


def test_held_value_keeps_escalation_back() -> None:
    held = LabEvent("9", day(8), {"alt": 20, "ast": 20}, held={"bilirubin": "no unit"})
    result = run_events([held], until=day(9))
    esc = escalation(result.state, day(9), SEED)
    assert not esc.allowed and "quarantine" in esc.reason


def test_tpmt_poor_gets_no_escalation_reminders() -> None:
    s = Seq()
    events = [s.lab(day(n), alt=22, ast=20) for n in (3, 6, 9, 12)]
    result = run_events(events, until=day(13), tpmt="poor")
    assert "titration.escalation_due" not in rules_fired(result)
    normal = run_events(events, until=day(13), tpmt="normal")
    assert "titration.escalation_due" in rules_fired(normal)


def test_increase_during_a_hold_is_flagged() -> None:
    s = Seq()
    events = [s.lab(day(6), alt=40, ast=21), s.dose(day(8), 75)]
    result = run_events(events, until=day(8))
    hold = [f for f in result.findings if f.rule == "titration.increase_during_hold"]
    assert len(hold) == 1 and "warn.transaminase_elevated" in hold[0].message
    calm = run_events([s.lab(day(6), alt=22, ast=21), s.dose(day(8), 75)], until=day(8))
    assert "titration.increase_during_hold" not in rules_fired(calm)
