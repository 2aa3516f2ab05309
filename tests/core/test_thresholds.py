"""Every rule at, just below and just above each threshold (thresholds are inclusive)."""

from __future__ import annotations

import pytest

from monitor.core.domain import LabEvent
from tests.helpers import BSR, Seq, day, lab_rules, run_events

# Seed patient: baseline ALT 22 / AST 20, ULN ALT 33 / AST 32 / ALP 120 / bilirubin 21.
HIGH_BASE = {"alt": 120.0, "ast": 110.0, "alp": 70.0, "bilirubin": 8.0}


@pytest.mark.parametrize(
    ("alt", "fires"),
    [(109.9, False), (110.0, True), (110.1, True)],
    ids=["below-5x", "at-5x", "above-5x"],
)
def test_stop_transaminase_baseline_multiple(alt: float, fires: bool) -> None:
    s = Seq()
    assert ("stop.transaminase" in lab_rules([s.lab(day(3), alt=alt)])) is fires


@pytest.mark.parametrize(("ast", "fires"), [(99.9, False), (100.0, True), (100.5, True)])
def test_stop_transaminase_ast_counts_too(ast: float, fires: bool) -> None:
    s = Seq()
    assert ("stop.transaminase" in lab_rules([s.lab(day(3), ast=ast)])) is fires


@pytest.mark.parametrize(("alt", "fires"), [(499.9, False), (500.0, True), (500.1, True)])
def test_stop_transaminase_absolute_line_with_high_baseline(alt: float, fires: bool) -> None:
    """Baseline 120 puts 5x at 600, so only the 500 U/L line can decide."""
    s = Seq()
    got = lab_rules([s.lab(day(3), alt=alt)], baseline=HIGH_BASE)
    assert ("stop.transaminase" in got) is fires


@pytest.mark.parametrize(("alt", "fires"), [(65.9, False), (66.0, True), (66.1, True)])
def test_symptomatic_baseline_multiple(alt: float, fires: bool) -> None:
    s = Seq()
    got = lab_rules([s.symptoms(day(2), "nausea"), s.lab(day(3), alt=alt)])
    assert ("stop.transaminase_symptomatic" in got) is fires


@pytest.mark.parametrize(("alt", "fires"), [(299.9, False), (300.0, True), (300.1, True)])
def test_symptomatic_absolute_line(alt: float, fires: bool) -> None:
    s = Seq()
    got = lab_rules([s.symptoms(day(2), "ruq_pain"), s.lab(day(3), alt=alt)], baseline=HIGH_BASE)
    assert ("stop.transaminase_symptomatic" in got) is fires


def test_symptomatic_needs_symptoms() -> None:
    s = Seq()
    got = lab_rules([s.lab(day(3), alt=80.0)])
    assert "stop.transaminase_symptomatic" not in got
    assert "warn.transaminase_elevated" in got


def test_symptom_report_older_than_its_window_does_not_count() -> None:
    s = Seq()
    got = lab_rules([s.symptoms(day(1), "nausea"), s.lab(day(8, 1), alt=80.0)])
    assert "stop.transaminase_symptomatic" not in got


def test_resolved_report_clears_symptoms() -> None:
    s = Seq()
    events = [s.symptoms(day(1), "nausea"), s.symptoms(day(2), "resolved"), s.lab(day(3), alt=80.0)]
    assert "stop.transaminase_symptomatic" not in lab_rules(events)


@pytest.mark.parametrize(
    ("bili", "alt", "fires"),
    [(41.9, 40.0, False), (42.0, 40.0, True), (42.1, 40.0, True), (50.0, 33.0, False)],
    ids=["below-2x", "at-2x", "above-2x", "alt-not-above-uln"],
)
def test_stop_bilirubin_umol(bili: float, alt: float, fires: bool) -> None:
    s = Seq()
    got = lab_rules([s.lab(day(3), alt=alt, bilirubin=bili)])
    assert ("stop.bilirubin" in got) is fires


@pytest.mark.parametrize(("mg_dl", "fires"), [(2.45, False), (42.0 / 17.1, True), (2.46, True)])
def test_stop_bilirubin_mg_dl_converted(mg_dl: float, fires: bool) -> None:
    from monitor.core.units import to_canonical

    s = Seq()
    umol = to_canonical("bilirubin", mg_dl, "mg/dL")
    got = lab_rules([s.lab(day(3), alt=40.0, bilirubin=umol)])
    assert ("stop.bilirubin" in got) is fires


def test_bilirubin_combines_with_alt_from_a_separate_message_of_the_same_draw() -> None:
    s = Seq()
    got = lab_rules([s.lab(day(3), alt=40.0), s.lab(day(3, 2), bilirubin=45.0)])
    assert "stop.bilirubin" in got


@pytest.mark.parametrize(
    ("analyte", "value", "fires"),
    [
        ("alt", 660.0, False),
        ("alt", 660.1, True),
        ("ast", 640.1, True),
        ("alp", 2400.0, False),
        ("alp", 2400.1, True),
        ("bilirubin", 210.0, False),
        ("bilirubin", 210.1, True),
    ],
)
def test_grade4_normal_baseline_against_uln(analyte: str, value: float, fires: bool) -> None:
    s = Seq()
    got = lab_rules([s.lab(day(3), **{analyte: value})])
    assert ("stop.grade4" in got) is fires


@pytest.mark.parametrize(("alt", "fires"), [(1000.0, False), (1000.1, True)])
def test_grade4_abnormal_baseline_against_baseline(alt: float, fires: bool) -> None:
    s = Seq()
    base = {"alt": 50.0, "ast": 20.0}
    assert ("stop.grade4" in lab_rules([s.lab(day(3), alt=alt)], baseline=base)) is fires


@pytest.mark.parametrize(("alt", "fires"), [(33.0, False), (33.1, True), (34.0, True)])
def test_warn_elevated_normal_baseline_above_uln(alt: float, fires: bool) -> None:
    s = Seq()
    assert ("warn.transaminase_elevated" in lab_rules([s.lab(day(3), alt=alt)])) is fires


@pytest.mark.parametrize(("alt", "fires"), [(74.9, False), (75.0, True), (75.1, True)])
def test_warn_elevated_abnormal_baseline_from_1_5x(alt: float, fires: bool) -> None:
    s = Seq()
    base = {"alt": 50.0, "ast": 20.0}
    assert (
        "warn.transaminase_elevated" in lab_rules([s.lab(day(3), alt=alt)], baseline=base)
    ) is fires


def test_warning_not_raised_when_a_stop_rule_fires_on_the_panel() -> None:
    s = Seq()
    got = lab_rules([s.lab(day(3), alt=600.0)])
    assert "stop.transaminase" in got
    assert "warn.transaminase_elevated" not in got


def test_result_reference_range_gives_its_uln() -> None:
    s = Seq()
    assert "warn.transaminase_elevated" not in lab_rules(
        [s.lab(day(3), uln={"alt": 56.0}, alt=50.0)]
    )
    assert "warn.transaminase_elevated" in lab_rules([Seq().lab(day(3), alt=50.0)])


def test_one_panel_raises_every_stop_rule_it_meets_once_each() -> None:
    s = Seq()
    result = run_events([s.lab(day(3), alt=700.0, ast=650.0, bilirubin=250.0)])
    stops = [f.rule for f in result.findings if f.is_stop]
    assert stops == ["stop.transaminase", "stop.bilirubin", "stop.grade4"]


def test_every_stop_message_names_recurrence_and_alternatives() -> None:
    s = Seq()
    events = [s.symptoms(day(2), "jaundice"), s.lab(day(3), alt=700.0, bilirubin=250.0)]
    result = run_events(events)
    stops = [f for f in result.findings if f.is_stop]
    assert {f.rule for f in stops} >= {
        "stop.transaminase",
        "stop.transaminase_symptomatic",
        "stop.bilirubin",
        "stop.grade4",
    }
    for f in stops:
        assert "recurred" in f.message
        for alternative in ("mycophenolate", "tacrolimus", "budesonide", "non-cirrhotic"):
            assert alternative in f.message
        assert "azathioprine-seed v1.0.0" in f.message


def test_finding_carries_grades_pattern_and_hys_law() -> None:
    s = Seq()
    events = [s.dose(day(8), 75.0), s.lab(day(20), alt=200.0, alp=100.0, bilirubin=50.0)]
    result = run_events(events)
    f = next(f for f in result.findings if f.rule == "stop.transaminase")
    assert f.grades["alt"] == 3  # 200 / 33 = 6.1x ULN
    assert f.pattern == "hepatocellular"
    assert f.r_ratio == pytest.approx((200 / 33) / (100 / 120), abs=0.01)
    assert f.hys_law is True
    assert f.days_since_increase == 12
    assert "12 days since the last dose increase" in f.message


def test_cholestatic_and_mixed_patterns() -> None:
    s = Seq()
    r = run_events([s.lab(day(3), alt=40.0, alp=400.0)])
    f = next(f for f in r.findings if f.rule == "warn.transaminase_elevated")
    assert f.pattern == "cholestatic"
    s = Seq()
    r = run_events([s.lab(day(3), alt=100.0, alp=150.0)])
    f = next(f for f in r.findings if f.rule == "warn.transaminase_elevated")
    assert f.pattern == "mixed"


@pytest.mark.parametrize(("alt", "fires"), [(100.0, False), (100.1, True)])
def test_bsr_profile_withholds_strictly_above_100(alt: float, fires: bool) -> None:
    """The BSR profile's line is `> 100 U/L` (gt), proving thresholds come from data."""
    s = Seq()
    result = run_events([s.lab(day(3), alt=alt)], protocol=BSR)
    assert ("stop.transaminase" in {f.rule for f in result.findings}) is fires


def test_lab_event_without_transaminases_is_not_a_liver_panel() -> None:
    assert not LabEvent("x", day(1), {"bilirubin": 10.0}).is_liver_panel


@pytest.mark.parametrize("baseline", [22.1, 10.3, 37.7, 59.9])
def test_a_value_exactly_at_a_computed_line_meets_it(baseline: float) -> None:
    """3 x 22.1 is 66.30000000000001 in floating point; 66.3 still meets the line."""
    s = Seq()
    at_line = round(3 * baseline, 1)
    events = [s.symptoms(day(2), "nausea"), s.lab(day(3), alt=at_line)]
    got = lab_rules(events, baseline={"alt": baseline, "ast": 20.0})
    assert "stop.transaminase_symptomatic" in got
    s = Seq()
    below = lab_rules(
        [s.symptoms(day(2), "nausea"), s.lab(day(3), alt=at_line - 0.1)],
        baseline={"alt": baseline, "ast": 20.0},
    )
    assert "stop.transaminase_symptomatic" not in below
