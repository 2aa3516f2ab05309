"""The batch evaluator (`evaluate_patients`) stores exactly what evaluating each
patient on its own stores, in a few statements for the whole batch, and one
patient whose evaluation fails leaves the others judged and its own deadline due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import select

from monitor.routing import Routing, parse_routing
from monitor.schemas import PatientIn
from monitor.services import codes
from monitor.services.alerts import silence
from monitor.services.evaluate import evaluate_patient, evaluate_patients
from monitor.services.intake import enroll, record_event
from monitor.settings import load_settings
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, DeliveryRow, EngineSnapshotRow, EventRow, PatientRow
from tests.helpers import CONFIG

SETTINGS = load_settings(CONFIG)
PROTOCOLS = SETTINGS.protocols()
ROUTING: Routing = parse_routing(SETTINGS.raw)
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
LATER = T0 + timedelta(days=9)
IDS = [f"P-{i}" for i in range(1, 7)]


def _enrol(s: Any, pid: str) -> None:
    model = PatientIn.model_validate(
        {
            "id": pid,
            "weight_kg": 70,
            "start": T0.isoformat(),
            "tpmt": "normal",
            "baseline": {"alt": 20, "ast": 20},
        }
    )
    enroll(s, model, T0, PROTOCOLS, SETTINGS.default_protocol, ROUTING)


def _lab(s: Any, pid: str, days: float, **results: float) -> None:
    at = T0 + timedelta(days=days)
    payload = {"results": results}
    record_event(s, pid, "lab", at, payload, at, PROTOCOLS, routing=ROUTING, evaluate=False)


Where = Callable[[str], str]  # a database name -> the URL of a fresh database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """Fresh databases on SQLite, and on PostgreSQL where a server is named (its
    alerts go in through psycopg's pipeline, not SQLAlchemy's multi-row VALUES)."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}"
    make: Callable[[], str] = request.getfixturevalue("pg_database")
    return lambda name: make()


def build(url: str) -> Engine:
    """Six patients: a stop-level ALT, a warning-level one, an ordinary course, one
    silenced with a warning-level value, one with nothing since enrolment (overdue
    by LATER), and one with a stop value and an earlier warning already stored."""
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as s:
        for pid in IDS:
            _enrol(s, pid)
    with session_scope(engine) as s:
        _lab(s, "P-1", 3, alt=650, ast=40)
        _lab(s, "P-2", 3, alt=70, ast=30)
        _lab(s, "P-3", 3, alt=22, ast=21)
        _lab(s, "P-4", 3, alt=75, ast=30)
        _lab(s, "P-6", 2, alt=70, ast=30)
    with session_scope(engine) as s:
        evaluate_patient(s, "P-6", T0 + timedelta(days=2), PROTOCOLS, ROUTING)
        _lab(s, "P-6", 4, alt=600, ast=40)
        silence(s, "P-4", "admitted", T0 + timedelta(days=30), "coordinator", T0)
    return engine


def stored(engine: Engine) -> dict[str, Any]:
    """What evaluation left in the store, without ids, codes or group ids."""
    with session_scope(engine) as s:
        alerts = sorted(
            (a.patient_id, a.rule, a.key, a.severity, a.silenced_by is None, a.route, len(a.chain))
            for a in s.exec(select(AlertRow))
        )
        deliveries = sorted(
            (d.patient_id, d.recipient, d.purpose, d.severity, d.text.split(" Reply")[0])
            for d in s.exec(select(DeliveryRow))
        )
        checks = sorted((p.id, p.next_check_at, p.evaluated_at) for p in s.exec(select(PatientRow)))
        snaps = sorted(
            (r.patient_id, r.covers_at, r.fingerprint) for r in s.exec(select(EngineSnapshotRow))
        )
    return {"alerts": alerts, "deliveries": deliveries, "checks": checks, "snapshots": snaps}


def test_a_batch_stores_what_one_at_a_time_stores(where: Where) -> None:
    one, many = build(where("one.db")), build(where("many.db"))
    for pid in IDS:
        with session_scope(one) as s:
            evaluate_patient(s, pid, LATER, PROTOCOLS, ROUTING)
    with session_scope(many) as s:
        done = evaluate_patients(s, IDS, LATER, PROTOCOLS, ROUTING)
    assert done.failed == {}
    got, want = stored(many), stored(one)
    assert got == want
    rules = {(a[0], a[1]) for a in got["alerts"]}
    assert ("P-1", "stop.transaminase") in rules and ("P-6", "stop.transaminase") in rules
    assert any(a[0] == "P-4" and not a[4] for a in got["alerts"]), "P-4's warning is silenced"
    assert not any(d[0] == "P-4" for d in got["deliveries"]), "nothing sent for a silence"
    assert {a.patient_id for a in done.alerts} >= {"P-1", "P-2", "P-5", "P-6"}
    with session_scope(many) as s:  # once more: nothing new, in the batch as alone
        assert evaluate_patients(s, IDS, LATER, PROTOCOLS, ROUTING).alerts == []
    one.dispose()
    many.dispose()


def test_one_broken_patient_leaves_the_rest_judged_and_its_deadline_due(tmp_path: Path) -> None:
    engine = build(f"sqlite:///{tmp_path / 'broken.db'}")
    with session_scope(engine) as s:
        s.add(
            EventRow(
                patient_id="P-3",
                kind="lab",
                at=T0 + timedelta(days=5),
                recorded_at=T0 + timedelta(days=5),
                payload={"results": "not a mapping"},
            )
        )
        s.get(PatientRow, "P-3").next_check_at = T0 + timedelta(days=5)  # type: ignore[union-attr]
    with session_scope(engine) as s:
        done = evaluate_patients(s, [*IDS, "P-404"], LATER, PROTOCOLS, ROUTING)
    assert set(done.failed) == {"P-3", "P-404"}
    assert {a.patient_id for a in done.alerts} >= {"P-1", "P-2", "P-5", "P-6"}
    with session_scope(engine) as s:
        p3 = s.get(PatientRow, "P-3")
        assert p3 is not None and p3.next_check_at == T0 + timedelta(days=5)
        assert p3.evaluated_at != LATER
        p1 = s.get(PatientRow, "P-1")
        assert p1 is not None and p1.evaluated_at == LATER


def test_a_batch_costs_a_few_statements_not_a_dozen_per_patient(tmp_path: Path) -> None:
    engine = build(f"sqlite:///{tmp_path / 'count.db'}")
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(" ".join(str(args[2]).split()[:4]))

    event.listen(engine, "before_cursor_execute", seen)
    with session_scope(engine) as s:
        done = evaluate_patients(s, IDS, LATER, PROTOCOLS, ROUTING)
    event.remove(engine, "before_cursor_execute", seen)
    assert len(done.alerts) >= 4
    # patients, snapshots, fingerprints, events (x2), known alerts, silences, alerts
    # (no SELECT of codes before, none of the rows after), deliveries, snapshots,
    # checks: 11, for 6 patients
    assert len(statements) <= 11, "\n".join(statements)


def test_a_code_already_taken_is_drawn_again_and_the_rows_returned_are_the_stored_ones(
    where: Where, monkeypatch: Any
) -> None:
    engine = build(where("codes.db"))
    with session_scope(engine) as s:
        taken = s.exec(select(AlertRow.code)).first()
    assert taken is not None  # P-6's earlier warning
    draws = iter([{taken}, {"NEWCD2"}])
    real = codes.random_codes
    monkeypatch.setattr(codes, "random_codes", lambda n: next(draws, None) or real(n))
    with session_scope(engine) as s:
        [alert] = evaluate_patient(s, "P-1", LATER, PROTOCOLS, ROUTING)
        assert alert.code == "NEWCD2" and alert.id is not None
        assert s.get(AlertRow, alert.id) is alert  # in the session, as if loaded
        assert alert not in s.dirty and not s.new  # nothing left to write
        kept = {c.name: getattr(alert, c.name) for c in AlertRow.__table__.columns}  # type: ignore[attr-defined]
    with session_scope(engine) as s:
        row = s.get(AlertRow, kept["id"])
        assert row is not None
        assert {c.name: getattr(row, c.name) for c in AlertRow.__table__.columns} == kept  # type: ignore[attr-defined]
        assert s.exec(select(AlertRow).where(AlertRow.code == taken)).one().patient_id == "P-6"
    engine.dispose()
