"""Issue 9 through the service: a cholestatic HL7 panel becomes a stored warn.cholestatic
alert and holds escalation; NUDT15 goes enrol -> store -> evaluation -> views."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlmodel import select

from monitor.routing import parse_routing
from monitor.schemas import PatientIn
from monitor.services.evaluate import evaluate_patient
from monitor.services.intake import enroll
from monitor.services.payloads import ingest_payload
from monitor.services.records import patient_of
from monitor.settings import load_settings
from monitor.sources import load_mapping
from monitor.store.db import alembic_config, make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, PatientRow
from monitor.web.queries import patient_detail
from tests.conftest import CliRunner
from tests.helpers import CONFIG

SETTINGS = load_settings(CONFIG)
PROTOCOLS = SETTINGS.protocols()
ROUTING = parse_routing(SETTINGS.raw)
MAPPING = load_mapping()
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'clinical.db'}")
    upgrade(e)
    yield e
    e.dispose()


def enrol(engine: Engine, pid: str, **extra: object) -> list[AlertRow]:
    model = PatientIn.model_validate(
        {
            "id": pid,
            "weight_kg": 80,
            "start": T0.isoformat(),
            "start_dose_mg": 50,
            "tpmt": "normal",
            "baseline": {"alt": 22, "ast": 20, "alp": 70, "bilirubin": 8},
            "uln": {"alt": 33, "ast": 32, "alp": 120, "bilirubin": 21},
            "identifiers": [f"MRN:{pid}"],
            **extra,
        }
    )
    with session_scope(engine) as s:
        alerts = enroll(s, model, T0, PROTOCOLS, "azathioprine-seed", ROUTING)
        s.expunge_all()
        return alerts


def hl7_panel(msg_id: str, mrn: str, at: datetime, **values: float) -> str:
    ts = at.strftime("%Y%m%d%H%M%S")
    codes = {
        "alt": ("1742-6^ALT^LN", "U/L"),
        "ast": ("1920-8^AST^LN", "U/L"),
        "alp": ("6768-6^ALP^LN", "U/L"),
        "bilirubin": ("1975-2^Bilirubin^LN", "umol/L"),
    }
    segs = [
        f"MSH|^~\\&|LAB|HOSP|MONITOR|HOSP|{ts}||ORU^R01|{msg_id}|P|2.5.1",
        f"PID|1||{mrn}^^^MRN^MR",
        f"OBR|1||ORD-{msg_id}|24325-3^Hepatic panel^LN|||{ts}",
    ]
    for i, (analyte, value) in enumerate(values.items(), 1):
        code, unit = codes[analyte]
        segs.append(f"OBX|{i}|NM|{code}||{value}|{unit}|||||F|||{ts}")
    return "\r".join(segs) + "\r"


def alerts_of(engine: Engine, pid: str) -> list[AlertRow]:
    with session_scope(engine) as s:
        rows = list(s.exec(select(AlertRow).where(AlertRow.patient_id == pid)))
        s.expunge_all()
        return sorted(rows, key=lambda a: (a.at, a.rule))


def test_cholestatic_hl7_panel_raises_a_stored_warning_and_holds_escalation(
    engine: Engine,
) -> None:
    enrol(engine, "P-C", nudt15="normal")
    day3, day7 = T0 + timedelta(days=3), T0 + timedelta(days=7)
    with session_scope(engine) as s:
        # ALP 2.6x ULN, bilirubin 1.6x ULN, ALT/AST normal: R about 0.29.
        raw = hl7_panel("M-1", "P-C", day3, alt=25, ast=22, alp=312, bilirubin=33.6)
        out = ingest_payload(s, raw, "hl7", "hl7", day3, PROTOCOLS, ROUTING, MAPPING)
        assert out.stored == 1, [r.reason for r in out.results]
    [alert] = alerts_of(engine, "P-C")
    assert (alert.rule, alert.severity) == ("warn.cholestatic", "warning")
    assert "cholestatic (R 0.29)" in alert.message and "Hold dose escalation" in alert.message
    # Day 7: time for a step up after normal LFTs, but this panel is not normal.
    with session_scope(engine) as s:
        new = evaluate_patient(s, "P-C", day7 + timedelta(hours=1), PROTOCOLS)
        assert "titration.escalation_due" not in [a.rule for a in new]
        view = patient_detail(s, "P-C", PROTOCOLS, day7 + timedelta(hours=1), UTC)
        assert view.out.escalation_allowed is False
        assert "ALP 312" in view.out.escalation_reason


def test_nudt15_round_trips_enrol_store_evaluation_and_views(engine: Engine) -> None:
    [alert] = enrol(engine, "P-N", nudt15="intermediate")
    assert (alert.rule, alert.severity) == ("enrollment.nudt15_deficient", "warning")
    assert "reduced cap is 1 mg/kg/day (max 75 mg/day)" in alert.message
    with session_scope(engine) as s:
        row = s.get(PatientRow, "P-N")
        assert row is not None and (row.tpmt, row.nudt15) == ("normal", "intermediate")
        assert patient_of(row).nudt15 == "intermediate"
        view = patient_detail(s, "P-N", PROTOCOLS, T0 + timedelta(days=1), UTC)
        assert view.out.nudt15 == "intermediate"
        assert view.out.max_dose_mg == 75  # 80 kg at 1.0 mg/kg/day, not 1.5
    # Without NUDT15 recorded nothing is raised (neither profile asks) and the cap is full.
    assert enrol(engine, "P-U") == []
    with session_scope(engine) as s:
        row = s.get(PatientRow, "P-U")
        assert row is not None and row.nudt15 == "unknown"
        assert patient_detail(s, "P-U", PROTOCOLS, T0, UTC).out.max_dose_mg == 100


def test_migration_0013_gives_old_patients_unknown(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "0012")
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "insert into patients (id, weight_kg, start, start_dose_mg, tpmt, baseline, uln,"
                " protocol_id, enrolled_at) values ('P-1', 70, :t, 50, 'normal', '{}', '{}',"
                " 'x', :t)"
            ),
            {"t": "2026-01-02 00:00:00.000000"},
        )
    command.upgrade(cfg, "head")
    with engine.begin() as c:
        assert c.execute(sa.text("select nudt15 from patients")).scalar_one() == "unknown"
    command.downgrade(cfg, "0012")
    with engine.begin() as c:
        cols = [r[1] for r in c.execute(sa.text("pragma table_info(patients)"))]
    assert "nudt15" not in cols and "tpmt" in cols
    engine.dispose()


def test_cli_enroll_nudt15_and_patient_show(cli: CliRunner) -> None:
    start = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    args = ["enroll", "P-CLI", "--weight", "70", "--start", start, "--tpmt", "normal"]
    r = cli(*args, "--nudt15", "poor", "--baseline", "alt=20", "--baseline", "ast=20")
    assert r.code == 0, r.err
    assert "enrollment.nudt15_deficient" in r.out
    doc = json.loads(cli("patient", "show", "P-CLI", "--json").out)
    assert (doc["tpmt"], doc["nudt15"]) == ("normal", "poor")
    assert "NUDT15 poor metaboliser" in doc["escalation_reason"]
    shown = cli("patient", "show", "P-CLI").out
    assert "TPMT normal  NUDT15 poor" in shown
    bad = cli("enroll", "P-BAD", "--weight", "70", "--nudt15", "slow")
    assert bad.code == 2 and "nudt15" in bad.err
