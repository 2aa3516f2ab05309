"""The store: migrations match the models, evaluation is idempotent, times stay UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from monitor.schemas import LabIn, PatientIn
from monitor.services.evaluate import due_patients, evaluate_patient
from monitor.services.intake import enroll, record_event
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, PatientRow
from tests.helpers import SEED

PROTOCOLS = {SEED.id: SEED}
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _patient() -> PatientIn:
    return PatientIn.model_validate(
        {
            "id": "P-9",
            "weight_kg": 70,
            "start": T0.isoformat(),
            "tpmt": "normal",
            "baseline": {"alt": 20, "ast": 20},
            "identifiers": ["MRN:123"],
        }
    )


def test_migrations_produce_exactly_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_evaluating_twice_stores_nothing_new_and_times_are_utc(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    upgrade(engine)
    with session_scope(engine) as s:
        enroll(s, _patient(), T0, PROTOCOLS, SEED.id)
    lab = LabIn.model_validate(
        {"kind": "lab", "at": (T0 + timedelta(days=3)).isoformat(), "results": {"alt": 150}}
    )
    with session_scope(engine) as s:
        _, alerts = record_event(
            s, "P-9", "lab", lab.at, lab.payload(), T0 + timedelta(days=3), PROTOCOLS
        )
        assert [a.rule for a in alerts] == ["stop.transaminase"]
    with session_scope(engine) as s:
        assert evaluate_patient(s, "P-9", T0 + timedelta(days=3), PROTOCOLS) == []
        assert evaluate_patient(s, "P-9", T0 + timedelta(days=30), PROTOCOLS) == []
        row = s.exec(select(AlertRow)).one()
        assert row.at.tzinfo is not None and row.at == T0 + timedelta(days=3)
        assert row.details["values"]["alt"] == 150
        assert "P-9" not in row.message  # the message is about values, not identity


def test_sweep_finds_patients_by_next_check_index(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    with session_scope(engine) as s:
        enroll(s, _patient(), T0, PROTOCOLS, SEED.id)
        row = s.get(PatientRow, "P-9")
        assert row is not None and row.next_check_at is not None
        first = row.next_check_at
    with session_scope(engine) as s:
        assert due_patients(s, first - timedelta(seconds=1)) == []
        assert due_patients(s, first) == ["P-9"]
        new = evaluate_patient(s, "P-9", T0 + timedelta(days=5), PROTOCOLS)
        assert [a.rule for a in new] == ["lab.overdue"]
        row = s.get(PatientRow, "P-9")
        assert row is not None and row.next_check_at is not None
        assert row.next_check_at > first


def test_future_results_are_refused_and_slightly_ahead_ones_judged_on_time(
    tmp_path: Path,
) -> None:
    from monitor.services.intake import IntakeError

    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    upgrade(engine)
    with session_scope(engine) as s:
        enroll(s, _patient(), T0, PROTOCOLS, SEED.id)
    now = T0 + timedelta(days=2)
    far = LabIn.model_validate(
        {"kind": "lab", "at": (now + timedelta(hours=1)).isoformat(), "results": {"alt": 600}}
    )
    with session_scope(engine) as s:
        try:
            record_event(s, "P-9", "lab", far.at, far.payload(), now, PROTOCOLS)
        except IntakeError as exc:
            assert "in the future" in str(exc)
        else:
            raise AssertionError("a result an hour ahead was taken")
    near_at = now + timedelta(minutes=2)
    near = LabIn.model_validate({"kind": "lab", "at": near_at.isoformat(), "results": {"alt": 600}})
    with session_scope(engine) as s:
        _, alerts = record_event(s, "P-9", "lab", near.at, near.payload(), now, PROTOCOLS)
        assert alerts == []  # not yet: its time has not come
        row = s.get(PatientRow, "P-9")
        assert row is not None and row.next_check_at == near_at
    with session_scope(engine) as s:
        assert due_patients(s, near_at) == ["P-9"]
        assert [a.rule for a in evaluate_patient(s, "P-9", near_at, PROTOCOLS)] == [
            "stop.transaminase"
        ]


def test_concurrent_evaluations_on_sqlite_store_each_alert_once(tmp_path: Path) -> None:
    """SQLite has no SELECT ... FOR UPDATE: every transaction takes the write lock."""
    import threading

    url = f"sqlite:///{tmp_path / 'race.db'}"
    setup = make_engine(url)
    upgrade(setup)
    with session_scope(setup) as s:
        enroll(s, _patient(), T0, PROTOCOLS, SEED.id)
    engines = [make_engine(url) for _ in range(6)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def evaluate(engine):  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            with session_scope(engine) as s:
                evaluate_patient(s, "P-9", T0 + timedelta(days=20), PROTOCOLS)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(setup) as s:
        assert [a.rule for a in s.exec(select(AlertRow))] == ["lab.overdue"]
    for e in (*engines, setup):
        e.dispose()


def test_the_health_probes_latest_evaluation_is_an_index_lookup(tmp_path: Path) -> None:
    """/healthz reads max(patients.evaluated_at): with a million patients a scan on
    every probe; the index makes it one lookup (migration 0017)."""
    from sqlalchemy import text

    eng = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(eng)
    with eng.connect() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                text("EXPLAIN QUERY PLAN SELECT max(evaluated_at) FROM patients")
            )
        )
    assert "ix_patients_evaluated_at" in plan, plan
