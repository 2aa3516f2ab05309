"""Titration guards, TPMT checks at enrolment and the episode rules."""

from __future__ import annotations

from tests.helpers import Seq, day, rules_fired, run_events


def test_escalation_due_after_seven_days_with_a_normal_panel() -> None:
    s = Seq()
    result = run_events([s.lab(day(3), alt=20.0), s.lab(day(6), alt=21.0)], until=day(8))
    due = [f for f in result.findings if f.rule == "titration.escalation_due"]
    assert [f.at for f in due] == [day(7)]
    assert "50 -> 75" in due[0].message


def test_escalation_waits_for_a_normal_panel_after_the_change() -> None:
    s = Seq()
    events = [s.lab(day(3), alt=40.0), s.lab(day(9), alt=20.0)]
    result = run_events(events, until=day(10))
    assert [f.at for f in result.findings if f.rule == "titration.escalation_due"] == [day(9)]


def test_escalation_waits_for_symptoms_to_pass() -> None:
    s = Seq()
    events = [
        s.lab(day(3), alt=20.0),
        s.symptoms(day(5), "fatigue"),
        s.lab(day(6), alt=20.0),
        s.lab(day(10), alt=20.0),
    ]
    result = run_events(events, until=day(13))
    assert [f.at for f in result.findings if f.rule == "titration.escalation_due"] == [day(12)]


def test_escalation_due_once_per_dose_level_and_not_past_maximum() -> None:
    s = Seq()
    events = [s.lab(d, alt=20.0) for d in (day(3), day(6), day(9), day(12))]
    events += [s.dose(day(13), 75.0), s.lab(day(16), alt=20.0), s.lab(day(19), alt=20.0)]
    result = run_events(events, until=day(25))
    rules = rules_fired(result)
    assert rules.count("titration.escalation_due") == 1  # 75 mg is the maximum (62 kg, toxic 100)
    assert "titration.target_reached" in rules


def test_step_too_large_and_too_early() -> None:
    s = Seq()
    result = run_events([s.dose(day(3), 100.0)], prior_toxic_dose_mg=200.0, weight_kg=90.0)
    rules = rules_fired(result)
    assert "titration.step_too_large" in rules
    assert "titration.step_too_early" in rules


def test_step_of_25_after_seven_days_is_fine() -> None:
    s = Seq()
    result = run_events([s.dose(day(7), 75.0)], prior_toxic_dose_mg=200.0, weight_kg=90.0)
    rules = rules_fired(result)
    assert "titration.step_too_large" not in rules
    assert "titration.step_too_early" not in rules


def test_step_too_early_counts_from_previous_change() -> None:
    s = Seq()
    events = [s.dose(day(7), 75.0), s.dose(day(13), 100.0)]
    result = run_events(events, prior_toxic_dose_mg=200.0, weight_kg=90.0)
    assert rules_fired(result).count("titration.step_too_early") == 1


def test_dose_above_limit_mg_per_kg_and_toxic_dose() -> None:
    s = Seq()
    over_kg = run_events([s.dose(day(7), 100.0)], weight_kg=62.0, prior_toxic_dose_mg=None)
    assert "titration.dose_above_limit" in rules_fired(over_kg)  # 100 > 93 mg
    s = Seq()
    at_toxic = run_events([s.dose(day(7), 100.0)], weight_kg=90.0, prior_toxic_dose_mg=100.0)
    assert "titration.dose_above_limit" in rules_fired(at_toxic)  # not below 100
    s = Seq()
    fine = run_events([s.dose(day(7), 75.0)], weight_kg=90.0, prior_toxic_dose_mg=100.0)
    assert "titration.dose_above_limit" not in rules_fired(fine)


def test_tpmt_checks_at_enrolment() -> None:
    unknown = run_events([], tpmt="unknown")
    assert [(f.rule, f.severity, f.at) for f in unknown.findings][:1] == [
        ("enrollment.tpmt_unknown", "warning", day(0))
    ]
    inter = run_events([], tpmt="intermediate")
    assert ("enrollment.tpmt_deficient", "warning") in [
        (f.rule, f.severity) for f in inter.findings
    ]
    poor = run_events([], tpmt="poor")
    assert ("enrollment.tpmt_deficient", "critical") in [
        (f.rule, f.severity) for f in poor.findings
    ]
    normal = run_events([], tpmt="normal")
    assert not [f for f in normal.findings if f.rule.startswith("enrollment.")]


def test_symptoms_warn_and_re_evaluate_the_latest_panel() -> None:
    s = Seq()
    events = [s.lab(day(3), alt=80.0), s.symptoms(day(4), "nausea")]
    result = run_events(events)
    assert rules_fired(result) == ["warn.transaminase_elevated", "stop.transaminase_symptomatic"]
    stop = result.findings[-1]
    assert stop.at == day(4)
    assert stop.event_id == events[0].id


def test_symptom_report_without_abnormal_panel_only_warns() -> None:
    s = Seq()
    result = run_events([s.lab(day(3), alt=20.0), s.symptoms(day(4), "vomiting")])
    assert rules_fired(result) == ["warn.symptoms"]


def test_symptom_report_more_than_7_days_after_panel_does_not_re_evaluate() -> None:
    s = Seq()
    result = run_events([s.lab(day(3), alt=80.0), s.symptoms(day(10, 1), "nausea")])
    assert "stop.transaminase_symptomatic" not in rules_fired(result)


def test_after_a_stop_only_stop_criteria_until_restart() -> None:
    """Contract: no lab.overdue, titration.* or new warn.* after a stop; stop criteria
    still fire (the injury can progress), each once per lab result."""
    s = Seq()
    events = [
        s.lab(day(3), alt=20.0),
        s.stop(day(4), "rash"),
        s.lab(day(10), alt=80.0),  # a warning if on therapy: suppressed
        s.symptoms(day(11), "nausea"),  # re-evaluates day 10: 80 >= 3 x 22 with symptoms
        s.lab(day(12), alt=900.0),
        s.dose(day(30), 50.0),
        s.lab(day(31), alt=40.0),
    ]
    result = run_events(events, until=day(32))
    while_stopped = [(f.rule, f.at) for f in result.findings if day(4) <= f.at < day(30)]
    assert while_stopped == [
        ("stop.transaminase_symptomatic", day(11)),
        ("stop.transaminase", day(12)),
        ("stop.transaminase_symptomatic", day(12)),
        ("stop.grade4", day(12)),
    ]
    already = next(f for f in result.findings if f.at == day(12))
    assert "already stopped on" in already.message and "recurred" in already.message
    assert [f.rule for f in result.findings if f.at >= day(30)] == ["warn.transaminase_elevated"]


def test_symptom_report_re_evaluates_every_panel_of_the_past_7_days() -> None:
    s = Seq()
    events = [s.lab(day(2), alt=70.0), s.lab(day(3), alt=30.0), s.symptoms(day(4), "nausea")]
    result = run_events(events)
    stop = next(f for f in result.findings if f.rule == "stop.transaminase_symptomatic")
    assert stop.event_id == events[0].id and stop.at == day(4)


def test_escalation_not_advised_in_the_evaluation_that_warns() -> None:
    s = Seq()
    result = run_events([s.lab(day(8), alt=50.0)], until=day(8))
    assert "titration.escalation_due" not in rules_fired(result)
    assert "warn.transaminase_elevated" in rules_fired(result)


def test_escalation_not_advised_while_liver_tests_are_overdue() -> None:
    s = Seq()
    events = [s.lab(day(2), alt=20.0), s.lab(day(6), alt=20.0), s.symptoms(day(4), "fatigue")]
    events.sort(key=lambda e: e.at)
    result = run_events(events, until=day(12))
    due = [f for f in result.findings if f.rule == "titration.escalation_due"]
    assert due == []  # symptoms end on day 11, when LFTs are already overdue (day 11)
    assert result.position.escalation_reason == "liver tests are overdue"


def test_stop_alert_silences_warnings_titration_and_deadlines() -> None:
    s = Seq()
    events = [s.lab(day(3), alt=600.0), s.symptoms(day(4), "nausea")]
    result = run_events(events, until=day(40))
    # The report re-evaluates the panel (a stop criterion); nothing else is raised.
    assert rules_fired(result) == ["stop.transaminase", "stop.transaminase_symptomatic"]


def test_dose_after_a_stop_alert_is_a_restart() -> None:
    s = Seq()
    events = [s.lab(day(3), alt=600.0), s.dose(day(10), 50.0)]
    result = run_events(events, until=day(15))
    assert rules_fired(result) == ["stop.transaminase", "lab.overdue"]
    assert result.findings[-1].at == day(15)
    assert result.position.on_therapy
