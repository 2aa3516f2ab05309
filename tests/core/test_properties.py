"""Properties: no rule fires below every threshold; the next due time never precedes the
last panel."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.domain import DoseEvent, Event, LabEvent, SymptomEvent
from monitor.core.timeline import deadline
from tests.helpers import SEED, day, run_events

# Baseline ALT 22 / AST 20, ULN 33 / 32 / ALP 120 / bilirubin 21 (see tests.helpers.patient).
below_everything = st.fixed_dictionaries(
    {},
    optional={
        "alt": st.floats(0, 33, allow_nan=False),
        "ast": st.floats(0, 32, allow_nan=False),
        "alp": st.floats(0, 120, allow_nan=False),
        "bilirubin": st.floats(0, 21, allow_nan=False),
        "ggt": st.floats(0, 40, allow_nan=False),
    },
).filter(bool)


@given(
    st.lists(below_everything, min_size=1, max_size=12),
    st.lists(st.sampled_from(SEED.symptoms.names), max_size=2),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_no_lab_rule_fires_below_every_threshold(
    panels: list[dict[str, float]], symptoms: list[str]
) -> None:
    events: list[Event] = []
    if symptoms:
        events.append(SymptomEvent("s", day(1), frozenset(symptoms)))
    events += [LabEvent(str(i), day(2 + 2 * i), p) for i, p in enumerate(panels)]
    result = run_events(events)
    lab_rules = {
        f.rule for f in result.findings if f.rule.startswith(("stop.", "warn.transaminase"))
    }
    assert lab_rules == set()


event_strategy = st.one_of(
    st.builds(lambda v: ("lab", v), st.floats(0, 2000, allow_nan=False)),
    st.builds(lambda d: ("dose", d), st.sampled_from([25.0, 50.0, 75.0, 100.0, 125.0])),
    st.just(("symptoms", 0.0)),
)


@given(
    st.lists(st.tuples(st.floats(0.01, 30, allow_nan=False), event_strategy), max_size=15),
    st.floats(0, 60, allow_nan=False),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_next_due_never_before_the_last_panel(
    steps: list[tuple[float, tuple[str, float]]], tail: float
) -> None:
    events: list[Event] = []
    t = day(0)
    for i, (gap, (kind, value)) in enumerate(steps):
        t += timedelta(days=gap)
        if kind == "lab":
            events.append(LabEvent(str(i), t, {"alt": value}))
        elif kind == "dose":
            events.append(DoseEvent(str(i), t, value))
        else:
            events.append(SymptomEvent(str(i), t, frozenset({"nausea"})))
    result = run_events(events, until=t + timedelta(days=tail))
    dl = deadline(result.state, SEED)
    panel = result.state.latest_panel()
    if dl is not None:
        anchor = panel.at if panel else result.state.cycle_start
        assert dl.due > anchor
        assert dl.fire_at >= dl.due
    # Every finding is at or before `until`, and in time order.
    times = [f.at for f in result.findings]
    assert times == sorted(times)
    assert all(x <= t + timedelta(days=tail) for x in times)
    # Each (rule, key) at most once.
    keys = [(f.rule, f.key) for f in result.findings]
    assert len(keys) == len(set(keys))


# Issue 9: a step up is never advised while the latest results since the last dose
# change have any analyte above its line. The helper patient's baselines are all below
# ULN, so each line is its ULN (the patient's, or the profile's for GGT).
LINE = {"alt": 33.0, "ast": 32.0, "alp": 120.0, "bilirubin": 21.0, "ggt": SEED.default_uln["ggt"]}
# Multiples of the line: mostly near it (either side, and exactly on it), rarely far above.
multiple = st.one_of(
    st.sampled_from([0.5, 0.9, 1.0, 1.01, 1.3]), st.floats(0.2, 2.2, allow_nan=False)
)
some_results = st.dictionaries(st.sampled_from(sorted(LINE)), multiple, min_size=1)
course_step = st.tuples(
    st.floats(0.5, 9, allow_nan=False),
    st.one_of(
        st.builds(lambda r: ("lab", r), some_results),
        st.builds(lambda d: ("dose", d), st.sampled_from([25.0, 50.0, 75.0, 100.0])),
    ),
)


@given(st.lists(course_step, min_size=1, max_size=14), st.floats(0, 20, allow_nan=False))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_no_escalation_advice_over_an_abnormal_latest_panel(
    steps: list[tuple[float, tuple[str, object]]], tail: float
) -> None:
    events: list[Event] = []
    t = day(0)
    for i, (gap, (kind, value)) in enumerate(steps):
        t += timedelta(days=gap)
        if kind == "lab":
            assert isinstance(value, dict)
            events.append(LabEvent(str(i), t, {a: m * LINE[a] for a, m in value.items()}))
        else:
            assert isinstance(value, float)
            events.append(DoseEvent(str(i), t, value))
    result = run_events(events, until=t + timedelta(days=tail), weight_kg=90.0)
    for f in result.findings:
        if f.rule != "titration.escalation_due":
            continue
        # A dose record equal to the dose in effect is not a change (the engine's
        # reading: a restated dose does not restart the interval), unless therapy was
        # stopped since the dose before it: then it is a restart, a new cycle whose
        # results are judged from there on (results before a stop do not carry over).
        stops = [g.at for g in result.findings if g.is_stop]
        changes, current, last_dose = [], 50.0, day(0)  # the helper's start dose
        for e in events:
            if isinstance(e, DoseEvent) and e.at <= f.at:
                restart = any(last_dose <= at < e.at for at in stops)
                if e.dose_mg != current or restart:
                    changes.append(e.at)
                current, last_dose = e.dose_mg, e.at
        since = max(changes, default=day(0))
        labs = [e for e in events if isinstance(e, LabEvent) and since <= e.at <= f.at]
        panels = [lab for lab in labs if lab.is_liver_panel]
        assert panels, "escalation advised with no liver panel since the last change"
        # Each analyte counts by its latest value since the change: a separate later
        # result of that analyte (a GGT or bilirubin message of its own) supersedes
        # the panel's, so the latest panel's value stands unless one came after it.
        latest: dict[str, float] = {}
        for lab in labs:
            latest.update(lab.results)
        remeasured = {a for lab in labs if lab.at > panels[-1].at for a in lab.results}
        above = {a: v for a, v in panels[-1].results.items() if v > LINE[a] and a not in remeasured}
        assert not above, f"escalation advised at {f.at} over the latest panel's {above}"
        assert all(v <= LINE[a] for a, v in latest.items()), (f.at, latest)
