"""Issue 9: cholestatic panels, repeat-test deadlines, held values, TPMT-poor patients."""

from __future__ import annotations

from monitor.core.domain import LabEvent
from monitor.core.timeline import escalation, max_dose
from tests.helpers import BSR, SEED, Seq, day, rules_fired, run_events


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


def enrolment_findings(**patient_kw: object) -> dict[str, str]:
    result = run_events([], **patient_kw)
    return {f.rule: f.severity for f in result.findings if f.rule.startswith("enrollment.")}


def test_nudt15_poor_and_intermediate_alert_beside_tpmt() -> None:
    poor = run_events([], nudt15="poor")
    crit = [f for f in poor.findings if f.rule == "enrollment.nudt15_deficient"]
    assert [f.severity for f in crit] == ["critical"]
    assert SEED.poor_metaboliser_advice in crit[0].message
    assert "enrollment.tpmt_deficient" not in {f.rule for f in poor.findings}
    inter = enrolment_findings(nudt15="intermediate")
    assert inter == {"enrollment.nudt15_deficient": "warning"}
    # The contract's TPMT ids are unchanged: a TPMT-poor patient still gets its own.
    assert enrolment_findings(tpmt="poor", nudt15="poor") == {
        "enrollment.tpmt_deficient": "critical",
        "enrollment.nudt15_deficient": "critical",
    }
    # Neither profile alerts on an unrecorded NUDT15 (their sources ask for TPMT only).
    assert enrolment_findings(nudt15="unknown") == {}
    assert enrolment_findings(nudt15="unknown", protocol=BSR) == {}


def test_nudt15_unknown_alert_is_a_profile_choice() -> None:
    from dataclasses import replace

    asks = replace(SEED, pharmacogenomics=replace(SEED.pharmacogenomics, nudt15_unknown_alert=True))
    assert enrolment_findings(nudt15="unknown", protocol=asks) == {
        "enrollment.nudt15_unknown": "warning"
    }
    assert enrolment_findings(nudt15="normal", protocol=asks) == {}


def test_nudt15_intermediate_gets_the_reduced_cap_and_poor_no_reminders() -> None:
    s = Seq()
    events = [s.lab(day(n), alt=22, ast=20) for n in (3, 6, 9, 12)]
    normal = run_events(events, until=day(13))
    inter = run_events(events, until=day(13), nudt15="intermediate")
    # 62 kg at 1.0 mg/kg/day: 50 mg (down to a 25 mg step), the start dose, so no step up.
    assert max_dose(inter.state.patient, SEED) == 50.0
    assert "titration.escalation_due" in rules_fired(normal)
    assert "titration.escalation_due" not in rules_fired(inter)
    poor = run_events(events, until=day(13), nudt15="poor")
    assert "titration.escalation_due" not in rules_fired(poor)
    esc = escalation(poor.state, day(13), SEED)
    assert not esc.allowed and esc.reason.startswith("NUDT15 poor metaboliser")
