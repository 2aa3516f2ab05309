"""Incremental evaluation: continuing from a snapshot gives exactly what a replay of the
whole history from the start gives, finding for finding, deadlines and next check
included, however the evaluations are spread over the course."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.domain import DoseEvent, Event, LabEvent, StopEvent, SymptomEvent
from monitor.core.protocol import Protocol
from monitor.core.timeline import deadline
from monitor.engine import Run, Snapshot, run
from tests.helpers import BSR, SEED, T0, patient

analyte_values = st.fixed_dictionaries(
    {},
    optional={
        "alt": st.floats(5, 400, allow_nan=False),
        "ast": st.floats(5, 400, allow_nan=False),
        "alp": st.floats(20, 600, allow_nan=False),
        "bilirubin": st.floats(2, 90, allow_nan=False),
    },
).filter(bool)

kinds = st.one_of(
    st.tuples(st.just("lab"), analyte_values),
    st.tuples(st.just("dose"), st.sampled_from([25.0, 50.0, 75.0, 100.0, 125.0])),
    st.tuples(st.just("symptoms"), st.sampled_from(["nausea", "jaundice", "resolved"])),
    st.tuples(st.just("stop"), st.just("clinician")),
)

# (days since the previous event, what it is); gaps reach past every deadline's grace.
histories = st.lists(st.tuples(st.floats(0.01, 40, allow_nan=False), kinds), max_size=18)


def build(steps: list[tuple[float, tuple[str, object]]]) -> list[Event]:
    events: list[Event] = []
    t = T0
    for i, (gap, (kind, value)) in enumerate(steps):
        t += timedelta(days=gap)
        if kind == "lab":
            assert isinstance(value, dict)
            events.append(LabEvent(str(i), t, value))
        elif kind == "dose":
            assert isinstance(value, float)
            events.append(DoseEvent(str(i), t, value))
        elif kind == "symptoms":
            resolved = value == "resolved"
            names = frozenset() if resolved else frozenset({str(value)})
            events.append(SymptomEvent(str(i), t, names, resolved))
        else:
            events.append(StopEvent(str(i), t, str(value)))
    return events


def incremental(events: list[Event], nows: list[datetime], protocol: Protocol) -> Run:
    """Evaluate at each of `nows` in turn, each continuing from the last one's snapshot."""
    assert nows
    snap: Snapshot | None = None
    result: Run | None = None
    for now in nows:
        fresh = [e for e in events if snap is None or e.at > snap.covers]
        result = run(patient(), fresh, now, protocol, since=snap)
        snap = result.snapshot
    assert result is not None
    return result


@pytest.mark.parametrize("protocol", [SEED, BSR], ids=["seed", "bsr"])
@given(
    histories,
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=6),
    st.floats(0, 60, allow_nan=False),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_incremental_equals_full_replay(
    protocol: Protocol,
    steps: list[tuple[float, tuple[str, object]]],
    cuts: list[float],
    tail: float,
) -> None:
    events = build(steps)
    end = (events[-1].at if events else T0) + timedelta(days=tail)
    # Evaluation moments spread over the course (new events arrive between them),
    # always ending at `end`: the sweep's and intake's calls in some order.
    span = end - T0
    nows = [*sorted(T0 + span * c for c in cuts), end]
    full = run(patient(), events, end, protocol)
    inc = incremental(events, nows, protocol)
    assert inc.findings == full.findings
    assert inc.position == full.position
    assert inc.position.next_check_at == full.position.next_check_at
    assert deadline(inc.state, protocol) == deadline(full.state, protocol)
    assert inc.state == full.state
    assert inc.snapshot.event_ids == full.snapshot.event_ids


def test_overdue_fires_from_a_snapshot_as_from_the_start() -> None:
    """A deadline passed after the snapshot fires once, at the same time as in a replay."""
    events: list[Event] = [LabEvent("1", T0 + timedelta(days=7), {"alt": 25.0, "ast": 21.0})]
    first = run(patient(), events, T0 + timedelta(days=8), SEED)
    later = run(patient(), [], T0 + timedelta(days=60), SEED, since=first.snapshot)
    full = run(patient(), events, T0 + timedelta(days=60), SEED)
    overdue = [f for f in later.findings if f.rule == "lab.overdue"]
    assert overdue, "the deadline passed after the snapshot must fire"
    assert later.findings == full.findings


def test_an_event_inside_the_snapshot_is_refused() -> None:
    """A late result (dated before what the snapshot covers) cannot be continued from:
    the caller must replay the whole history."""
    events: list[Event] = [LabEvent("1", T0 + timedelta(days=7), {"alt": 25.0, "ast": 21.0})]
    first = run(patient(), events, T0 + timedelta(days=10), SEED)
    assert first.snapshot.covers == T0 + timedelta(days=7)
    late = LabEvent("9", T0 + timedelta(days=5), {"alt": 300.0})
    with pytest.raises(ValueError, match="out of order"):
        run(patient(), [late], T0 + timedelta(days=11), SEED, since=first.snapshot)
