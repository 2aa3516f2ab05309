"""Stored engine snapshots: a later event continues from one; a late or corrected
result, a changed profile or an event edited in place replays the whole history, and
the alerts are the ones a replay from the start stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

import monitor.services.evaluate as evaluate_mod
from monitor.engine import Run, run
from monitor.schemas import PatientIn
from monitor.services import snapshots
from monitor.services.draws import same_draw, supersede
from monitor.services.evaluate import evaluate_patient
from monitor.services.intake import enroll, record_event
from monitor.services.records import patient_of
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, EngineSnapshotRow, PatientRow
from tests.helpers import SEED

PROTOCOLS = {SEED.id: SEED}
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(eng)
    with session_scope(eng) as s:
        patient = PatientIn.model_validate(
            {
                "id": "P-1",
                "weight_kg": 70,
                "start": T0.isoformat(),
                "tpmt": "normal",
                "baseline": {"alt": 20, "ast": 20},
            }
        )
        enroll(s, patient, T0, PROTOCOLS, SEED.id)
    return eng


@pytest.fixture
def continued(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per engine run of an evaluation: True when it continued a snapshot."""
    calls: list[bool] = []

    def spy(*args: Any, **kw: Any) -> Run:
        calls.append(kw.get("since") is not None)
        return run(*args, **kw)

    monkeypatch.setattr(evaluate_mod, "run", spy)
    return calls


def lab(eng: Engine, days: float, now_days: float, **results: float) -> list[str]:
    with session_scope(eng) as s:
        _, alerts = record_event(
            s,
            "P-1",
            "lab",
            T0 + timedelta(days=days),
            {"results": results},
            T0 + timedelta(days=now_days),
            PROTOCOLS,
        )
        return [a.rule for a in alerts]


def test_a_later_result_continues_from_the_snapshot(engine: Engine, continued: list[bool]) -> None:
    lab(engine, 7, 7, alt=25, ast=21)
    lab(engine, 14, 14, alt=24, ast=22)
    assert continued == [True, True]  # the enrolment stored the first snapshot
    with session_scope(engine) as s:
        row = s.get(EngineSnapshotRow, "P-1")
        assert row is not None and row.covers_at == T0 + timedelta(days=14)


def test_a_late_result_dated_before_the_snapshot_replays_and_raises(
    engine: Engine, continued: list[bool]
) -> None:
    lab(engine, 14, 14, alt=24, ast=22)
    assert lab(engine, 10, 15, alt=300, ast=40) == ["stop.transaminase"]
    assert continued == [True, False]


def test_a_corrected_result_replays(engine: Engine, continued: list[bool]) -> None:
    """The correction of a stop-level value, arriving later: the stop stays stored (an
    alert is never withdrawn) and the replay judges the corrected panel."""
    lab(engine, 7, 7, alt=300, ast=40)
    lab(engine, 9, 9, alt=25, ast=21)
    with session_scope(engine) as s:
        existing = same_draw(s, "P-1", T0 + timedelta(days=7))
        new, _ = record_event(
            s,
            "P-1",
            "lab",
            T0 + timedelta(days=7),
            {"results": {"alt": 30, "ast": 21}},
            T0 + timedelta(days=10),
            PROTOCOLS,
            evaluate=False,
        )
        assert new.id is not None
        assert supersede(s, existing, {"alt", "ast"}, new.id) == 1
        evaluate_patient(s, "P-1", T0 + timedelta(days=10), PROTOCOLS)
    assert continued[-1] is False
    with session_scope(engine) as s:
        row = s.get(EngineSnapshotRow, "P-1")
        assert row is not None
        snap = snapshots.load(s, patient_of(s.get(PatientRow, "P-1")), SEED)  # type: ignore[arg-type]
    # The snapshot no longer holds the corrected value's event.
    assert snap[1] is not None and "1" not in snap[1].event_ids


def test_a_changed_profile_replays(engine: Engine, continued: list[bool]) -> None:
    lab(engine, 7, 7, alt=25, ast=21)
    changed = replace(SEED, version=SEED.version + "-local")
    with session_scope(engine) as s:
        evaluate_patient(s, "P-1", T0 + timedelta(days=8), {SEED.id: changed})
    assert continued[-1] is False
    with session_scope(engine) as s:
        row = s.get(EngineSnapshotRow, "P-1")
        assert row is not None and row.profile_key == snapshots.profile_key(changed)


def test_alerts_equal_those_of_replays_without_snapshots(tmp_path: Path) -> None:
    """The same course through the store, once continuing from snapshots and once with
    the snapshot dropped before every evaluation: the same alerts."""
    stored: list[list[tuple[str, str]]] = []
    for drop in (False, True):
        eng = make_engine(f"sqlite:///{tmp_path / f'{drop}.db'}")
        upgrade(eng)
        with session_scope(eng) as s:
            enroll(
                s,
                PatientIn.model_validate(
                    {
                        "id": "P-1",
                        "weight_kg": 70,
                        "start": T0.isoformat(),
                        "tpmt": "normal",
                        "baseline": {"alt": 20, "ast": 20},
                    }
                ),
                T0,
                PROTOCOLS,
                SEED.id,
            )
        course = [(7, 7, 25.0), (14, 14, 70.0), (12, 16, 30.0), (50, 50, 25.0), (80, 80, 200.0)]
        for days, now, alt in course:
            if drop:
                with session_scope(eng) as s:
                    snapshots.drop(s, "P-1")
            lab(eng, days, now, alt=alt, ast=21)
        with session_scope(eng) as s:
            if drop:
                snapshots.drop(s, "P-1")
            evaluate_patient(s, "P-1", T0 + timedelta(days=120), PROTOCOLS)
            stored.append(sorted((a.rule, a.key) for a in s.exec(select(AlertRow))))
    assert stored[0] == stored[1]
    assert any(rule == "lab.overdue" for rule, _ in stored[0])


def test_results_back_loaded_in_time_order_continue(engine: Engine, continued: list[bool]) -> None:
    """A feed catching up (draws long before `now`, in time order) continues each time:
    the snapshot is taken at the last event, not at `now`."""
    for d in (7, 14, 21, 28):
        lab(engine, d, 200, alt=25, ast=21)
    assert continued == [True, True, True, True]


class _Boom:
    """A pickle that would run a callable on load."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.getenv, ("HOME",))


def test_a_snapshot_naming_any_other_callable_is_refused_and_the_history_replays(
    engine: Engine, continued: list[bool]
) -> None:
    import pickle
    import zlib

    lab(engine, 7, 7, alt=25, ast=21)
    with session_scope(engine) as s:
        row = s.get(EngineSnapshotRow, "P-1")
        assert row is not None
        row.state = zlib.compress(pickle.dumps(_Boom()))
        s.add(row)
    with pytest.raises(pickle.UnpicklingError, match="getenv: refused"):
        snapshots._loads(zlib.compress(pickle.dumps(_Boom())))
    lab(engine, 14, 14, alt=24, ast=22)
    assert continued == [True, False]  # refused: a full replay, then a good snapshot again
    lab(engine, 21, 21, alt=24, ast=22)
    assert continued[-1] is True
