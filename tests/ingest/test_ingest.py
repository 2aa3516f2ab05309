"""Ingest through the real parsers and intake: stored, duplicate, quarantined, retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from monitor.routing import parse_routing
from monitor.schemas import PatientIn
from monitor.services.intake import enroll
from monitor.services.payloads import ingest_payload
from monitor.services.quarantine import count_waiting, discard, retry_quarantined, waiting
from monitor.settings import load_settings
from monitor.sources import load_mapping
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, DeliveryRow, EventRow
from tests.helpers import CONFIG, ROOT

SAMPLES = ROOT / "tests" / "data" / "samples"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = load_settings(CONFIG)
PROTOCOLS = SETTINGS.protocols()
ROUTING = parse_routing(SETTINGS.raw)
MAPPING = load_mapping()


def hl7(msg_id: str, mrn: str, at: datetime, status: str = "F", **values: float) -> str:
    ts = at.strftime("%Y%m%d%H%M%S")
    codes = {"alt": "1742-6^ALT^LN", "ast": "1920-8^AST^LN", "bilirubin": "1975-2^Bilirubin^LN"}
    units = {"alt": "U/L", "ast": "U/L", "bilirubin": "umol/L"}
    segs = [
        f"MSH|^~\\&|LAB|HOSP|MONITOR|HOSP|{ts}||ORU^R01|{msg_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
        f"OBR|1||ORD-{msg_id}|24325-3^Hepatic panel^LN|||{ts}",
    ]
    for i, (analyte, value) in enumerate(values.items(), 1):
        segs.append(f"OBX|{i}|NM|{codes[analyte]}||{value}|{units[analyte]}|||||{status}|||{ts}")
    return "\r".join(segs) + "\r"


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = make_engine(f"sqlite:///{tmp_path / 'ingest.db'}")
    upgrade(e)
    yield e
    e.dispose()


def enrol(engine, pid: str, identifiers: list[str], start: datetime) -> None:  # type: ignore[no-untyped-def]
    model = PatientIn.model_validate(
        {
            "id": pid,
            "weight_kg": 70,
            "start": start.isoformat(),
            "tpmt": "normal",
            "baseline": {"alt": 20, "ast": 20},
            "identifiers": identifiers,
        }
    )
    with session_scope(engine) as s:
        enroll(s, model, start, PROTOCOLS, SETTINGS.default_protocol, ROUTING)


def ingest(engine, payload: str | bytes, fmt: str, whole: bool = False):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return ingest_payload(
            s, payload, fmt, fmt, NOW, PROTOCOLS, ROUTING, MAPPING, source_name="test", whole=whole
        )


def lab_events(engine) -> list[EventRow]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return list(s.exec(select(EventRow).where(EventRow.kind == "lab")))


def test_unknown_patient_is_quarantined_then_retried_after_enrolment(engine) -> None:  # type: ignore[no-untyped-def]
    raw = (SAMPLES / "hl7" / "03-winpath-liver-bone-final-alt-high-v23.hl7").read_text()
    out = ingest(engine, raw, "hl7")
    assert (out.stored, out.quarantined) == (0, 1)
    assert "unknown patient" in (out.results[0].reason or "")
    assert "MRENTR 11111111110" in (out.results[0].reason or "")
    with session_scope(engine) as s:
        [item] = waiting(s)
        assert item.raw == raw.rstrip("\r") or item.raw.startswith("MSH|")
    enrol(engine, "P-TB", ["MRENTR:11111111110"], datetime(2020, 4, 1, tzinfo=UTC))
    with session_scope(engine) as s:
        ok, _ = retry_quarantined(s, item.id or 0, NOW, PROTOCOLS, ROUTING, MAPPING)
        assert ok and count_waiting(s) == 0
    [event] = lab_events(engine)
    assert event.payload["results"] == {"bilirubin": 5.0, "alp": 110.0, "alt": 58.0}
    assert event.payload["uln"]["alt"] == 50.0
    assert event.at == datetime(2020, 4, 21, 9, 28, tzinfo=UTC)
    again = ingest(engine, raw, "hl7")
    assert again.duplicates == 1 and len(lab_events(engine)) == 1


def test_labcorp_sample_in_mg_dl_is_converted(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-LC", ["374736473647364"], datetime(2015, 8, 1, tzinfo=UTC))
    raw = (SAMPLES / "hl7" / "01-labcorp-style-cmp-4-obr-v23.hl7").read_bytes()
    out = ingest(engine, raw, "hl7")
    assert out.stored == 1, out.results[0].reason
    [event] = lab_events(engine)
    results = event.payload["results"]
    assert set(results) >= {"alt", "ast", "alp", "bilirubin"}
    original_mg = float(event.payload["original"]["bilirubin"][0])
    assert results["bilirubin"] == pytest.approx(original_mg * 17.1)


def test_fhir_bundle_matched_by_subject_reference(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-FH", ["FHIR:Patient/pat2"], datetime(2000, 1, 1, tzinfo=UTC))
    raw = (SAMPLES / "fhir" / "01-r4-spec-ghp-collection-bundle.json").read_text()
    out = ingest(engine, raw, "fhir")
    assert out.stored == 1, [r.reason for r in out.results]
    [event] = lab_events(engine)
    assert event.payload["results"]["alt"] == 54.0 and event.payload["uln"]["alt"] == 45.0


def test_one_message_three_stop_criteria_one_notification(engine) -> None:  # type: ignore[no-untyped-def]
    start = NOW - timedelta(days=3)
    enrol(engine, "P-1", ["HOSP:123"], start)
    ingest(engine, hl7("M1", "123", NOW - timedelta(hours=1), alt=700, bilirubin=250), "hl7")
    with session_scope(engine) as s:
        rules = sorted(a.rule for a in s.exec(select(AlertRow)))
        deliveries = s.exec(select(DeliveryRow)).all()
    assert rules == ["stop.bilirubin", "stop.grade4", "stop.transaminase"]
    assert len(deliveries) == 1


def test_corrected_result_replaces_the_value_and_is_re_evaluated(engine) -> None:  # type: ignore[no-untyped-def]
    start = NOW - timedelta(days=3)
    enrol(engine, "P-1", ["HOSP:123"], start)
    drawn = NOW - timedelta(hours=2)
    ingest(engine, hl7("M1", "123", drawn, alt=60), "hl7")
    out = ingest(engine, hl7("M2", "123", drawn, status="C", alt=600), "hl7")
    assert [a.rule for a in out.alerts] == ["stop.transaminase"]
    events = lab_events(engine)
    old = next(e for e in events if e.payload["results"]["alt"] == 60)
    new = next(e for e in events if e.payload["results"]["alt"] == 600)
    assert old.superseded_by == new.id


def test_preliminary_result_raises_nothing_until_final(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:123"], NOW - timedelta(days=3))
    drawn = NOW - timedelta(hours=2)
    prelim = ingest(engine, hl7("M1", "123", drawn, status="P", alt=900), "hl7")
    assert prelim.stored == 1 and prelim.alerts == []
    final = ingest(engine, hl7("M2", "123", drawn, status="F", alt=900), "hl7")
    assert [a.rule for a in final.alerts] == ["stop.transaminase", "stop.grade4"]


def test_result_before_the_start_is_quarantined(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:123"], NOW - timedelta(days=3))
    out = ingest(engine, hl7("M1", "123", NOW - timedelta(days=30), alt=30), "hl7")
    assert out.quarantined == 1 and "before patient P-1" in (out.results[0].reason or "")


def test_csv_file_is_taken_whole_or_not_at_all(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:123"], NOW - timedelta(days=3))
    at = (NOW - timedelta(hours=1)).isoformat()
    good = f"patient_id,id_system,analyte,value,unit,observed_at\n123,HOSP,alt,30,U/L,{at}\n"
    mixed = good + f"999,HOSP,alt,31,U/L,{at}\n"
    out = ingest(engine, mixed, "csv", whole=True)
    assert out.quarantine_id is not None and "unknown patient" in (out.reason or "")
    assert lab_events(engine) == []
    assert ingest(engine, good, "csv", whole=True).stored == 1
    bad = good + f"123,HOSP,alt,abc,U/L,{at}\n"
    out = ingest(engine, bad, "csv", whole=True)
    assert out.quarantine_id is not None and "row 3" in (out.reason or "") + str(out)


def test_discard_needs_a_reason(engine) -> None:  # type: ignore[no-untyped-def]
    out = ingest(engine, "this is not hl7", "hl7")
    assert out.quarantined == 1
    with session_scope(engine) as s:
        [item] = waiting(s)
        with pytest.raises(LookupError):
            discard(s, item.id or 0, "C", " ", NOW)
        discard(s, item.id or 0, "C", "test message from the lab", NOW)
        assert count_waiting(s) == 0


def test_backload_a_hundred_messages_with_monitor_ingest(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    start = datetime.now(UTC) - timedelta(days=200)
    r = cli(
        "enroll",
        "P-BL",
        "--weight",
        "70",
        "--start",
        start.isoformat(),
        "--tpmt",
        "normal",
        "--baseline",
        "alt=20",
        "--baseline",
        "ast=20",
        "--identifier",
        "HOSP:777",
    )
    assert r.code == 0, r.err
    batch = "\n".join(
        hl7(
            f"BL{i:03d}", "777", start + timedelta(days=1 + i * 1.9), alt=20 + i % 7, ast=21
        ).replace("\r", "\n")
        for i in range(100)
    )
    path = tmp_path / "history.hl7"
    path.write_text(batch)
    r = cli("ingest", str(path))
    assert r.code == 0, r.err
    assert "100 stored, 0 duplicate(s), 0 quarantined" in r.out
    again = cli("ingest", str(path), "--format", "hl7")
    assert "0 stored, 100 duplicate(s)" in again.out


def test_monitor_ingest_applies_the_sites_ingest_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[ingest]` bounds hold for `monitor ingest` as for the listening sources."""
    from monitor.cli import main

    text = CONFIG.read_text().replace(
        'dir = "protocols"', f'dir = "{ROOT / "config" / "protocols"}"', 1
    )
    config = tmp_path / "monitor.toml"
    config.write_text(text + "\n[ingest]\nmax_segments = 3\n")
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    path = tmp_path / "one.hl7"
    path.write_text(hl7("LIM1", "777", datetime(2026, 3, 2, 9, tzinfo=UTC), alt=20, ast=21))
    capsys.readouterr()
    main(["--config", str(config), "ingest", str(path)])
    out = capsys.readouterr().out
    assert "0 stored" in out and "1 quarantined" in out
    assert "the limit is 3" in out
