"""Batch ingest beside its limits, measured in the same run.

Run: .venv/bin/python bench/bench_ingest.py [--messages 25000] [--patients 1000] [--quick]
     [--db-url URL]  (PostgreSQL: the same figures on that server)
What is timed, on one fresh SQLite file each:
- lab-monitor HL7: `ingest_payload` over N ORU^R01 messages of 4 liver values each
  (what `monitor ingest` does: parse, match, store, judge, commit every 200 messages);
- `hl7.parse` alone over the same messages (the parsing floor);
- bare `sqlite3` `executemany` of the same values as rows, one transaction (the
  storing floor);
- lab-monitor CSV: the same values as one CSV file;
- per-value cost for a patient with 500 stored lab values beside a new patient's.
Goals (issue 10): HL7 >= 0.5x `hl7.parse` alone; CSV >= 20,000 values/s; the
per-value cost at 500 stored events within 1.5x of a new patient's.
Writes bench/results/ingest-<time>.json with the machine's description; exits 1 when a
goal is missed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hl7  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.machine import machine, write_result  # noqa: E402
from bench.pgutil import drop_database, fresh_database  # noqa: E402
from monitor import heap  # noqa: E402
from monitor.routing import parse_routing  # noqa: E402
from monitor.schemas import PatientIn  # noqa: E402
from monitor.services.intake import enroll  # noqa: E402
from monitor.services.payloads import ingest_payload  # noqa: E402
from monitor.settings import load_settings  # noqa: E402
from monitor.sources import load_mapping  # noqa: E402
from monitor.store.db import make_engine, session_scope, upgrade  # noqa: E402

SETTINGS = load_settings(ROOT / "config" / "monitor.toml")
PROTOCOLS = SETTINGS.protocols()
ROUTING = parse_routing(SETTINGS.raw)
MAPPING = load_mapping()
NOW = datetime(2027, 3, 17, 9, tzinfo=UTC)  # the service's clock while it takes the batch in


def start_for(per_patient: int, now: datetime) -> datetime:
    """Enrolment such that each patient's `per_patient` draws (12 hours apart) end just
    before `now`, as a morning's results do. Dated long before `now`, every evaluation
    would find every patient overdue and raise an alert for each message."""
    return (now - timedelta(hours=12 * per_patient + 11)).replace(microsecond=0)


START = NOW  # set by measure() for its sizes
BATCH = 200
ANALYTES = (
    ("alt", "1742-6^ALT^LN", "U/L"),
    ("ast", "1920-8^AST^LN", "U/L"),
    ("alp", "6768-6^ALP^LN", "U/L"),
    ("bilirubin", "1975-2^Bilirubin^LN", "umol/L"),
)
GOAL_HL7_RATIO, GOAL_CSV_RATE, GOAL_HISTORY_RATIO = 0.5, 20_000.0, 1.5


def quiet() -> None:
    """Info lines would time the terminal, not the service."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def mrn(p: int) -> str:
    return f"B{p:07d}"


def draws(
    messages: int, patients: int, start: datetime | None = None
) -> Iterator[tuple[int, int, datetime]]:
    """(message number, patient, draw time): each patient's draws 12 hours apart."""
    base = start or START
    for n in range(messages):
        p = n % patients
        yield n, p, base + timedelta(hours=12 * (n // patients) + (p % 600) / 60)


def oru(n: int, p: int, at: datetime) -> str:
    ts = at.strftime("%Y%m%d%H%M%S")
    segs = [
        f"MSH|^~\\&|LAB|HOSP|MONITOR|HOSP|{ts}||ORU^R01|M{n}|P|2.5.1",
        f"PID|1||{mrn(p)}^^^HOSP^MR||DOE^JANE",
        f"OBR|1||ORD-{n}|24325-3^Hepatic panel^LN|||{ts}",
    ]
    for i, (_, code, unit) in enumerate(ANALYTES, 1):
        segs.append(f"OBX|{i}|NM|{code}||{18 + (n + i) % 5}|{unit}|||||F|||{ts}")
    return "\r".join(segs) + "\r"


def csv_text(messages: int, patients: int) -> str:
    lines = ["patient_id,id_system,analyte,value,unit,observed_at"]
    for n, p, at in draws(messages, patients):
        for i, (analyte, _, unit) in enumerate(ANALYTES, 1):
            lines.append(f"{mrn(p)},HOSP,{analyte},{18 + (n + i) % 5},{unit},{at.isoformat()}")
    return "\n".join(lines) + "\n"


DB_URL: str | None = None  # --db-url: each fresh database is made on that server
MADE: list[str] = []


def fresh(tmp: Path, name: str, patients: int, start: datetime | None = None) -> Engine:
    url = f"sqlite:///{tmp / name}"
    if DB_URL:
        db = "bench_ingest_" + name.split(".")[0]
        url = fresh_database(DB_URL, db)
        MADE.append(db)
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as s:
        for p in range(patients):
            model = PatientIn.model_validate(
                {
                    "id": f"P-{p}",
                    "weight_kg": 70,
                    "start": (start or START).isoformat(),
                    "tpmt": "normal",
                    "baseline": {"alt": 20, "ast": 20},
                    "identifiers": [f"HOSP|{mrn(p)}"],
                }
            )
            enroll(s, model, start or START, PROTOCOLS, SETTINGS.default_protocol, ROUTING)
    return engine


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def ingest(engine: Engine, payload: str, fmt: str) -> Any:
    heap.settle()  # as `monitor ingest` does before it parses
    with session_scope(engine) as s:
        return ingest_payload(
            s,
            payload,
            fmt,
            f"file:{fmt}",
            NOW,
            PROTOCOLS,
            ROUTING,
            MAPPING,
            source_name="bench",
            whole=(fmt == "csv"),
            commit_every=0 if fmt == "csv" else BATCH,
        )


def bare_sqlite(path: Path, rows: list[tuple[str, str, float, str, str]]) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE v (patient TEXT, analyte TEXT, value REAL, at TEXT, msg TEXT)")
    with con:
        con.executemany("INSERT INTO v VALUES (?, ?, ?, ?, ?)", rows)
    con.close()


def history_cost(tmp: Path, per: int) -> tuple[float, float]:
    """Seconds per value for `per` messages of a patient with no history, and of one
    with 500 stored lab values (125 earlier messages)."""
    start = start_for(125 + per, NOW)
    engine = fresh(tmp, "history.db", 2, start)
    ingest(engine, "".join(oru(n, 1, at) for n, _, at in draws(125, 1, start)), "hl7")
    later = list(draws(125 + per, 1, start))[125:]
    new_s, _ = timed(
        lambda: ingest(engine, "".join(oru(90000 + n, 0, at) for n, _, at in later), "hl7")
    )
    old_s, _ = timed(lambda: ingest(engine, "".join(oru(n, 1, at) for n, _, at in later), "hl7"))
    engine.dispose()
    values = per * len(ANALYTES)
    return new_s / values, old_s / values


def alerts_in(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT count(*) FROM alerts")).scalar_one())


def main(argv: list[str] | None = None) -> int:
    global DB_URL
    quiet()
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, help="default 25,000 (100,000 values)")
    ap.add_argument("--patients", type=int, help="default 1,000")
    ap.add_argument("--quick", action="store_true", help="500 messages, 50 patients")
    ap.add_argument("--db-url", help="a PostgreSQL URL (scripts/ensure-postgres prints one)")
    args = ap.parse_args(argv)
    args.messages = args.messages or (500 if args.quick else 25_000)
    args.patients = args.patients or (50 if args.quick else 1_000)
    DB_URL = args.db_url
    try:
        return measure(args)
    finally:
        for db in MADE:
            drop_database(DB_URL or "", db)


def measure(args: argparse.Namespace) -> int:
    global START
    START = start_for(-(-args.messages // args.patients), NOW)
    db = "postgresql" if DB_URL else "sqlite"
    n_values = args.messages * len(ANALYTES)
    texts = [oru(n, p, at) for n, p, at in draws(args.messages, args.patients)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        parse_s, _ = timed(lambda: [hl7.parse(t) for t in texts])
        rows = [
            (mrn(p), a, 20.0, at.isoformat(), f"M{n}")
            for n, p, at in draws(args.messages, args.patients)
            for a, _, _ in ANALYTES
        ]
        sqlite_s, _ = timed(lambda: bare_sqlite(tmp / "bare.db", rows))
        engine = fresh(tmp, "hl7.db", args.patients)
        hl7_s, out = timed(lambda: ingest(engine, "".join(texts), "hl7"))
        assert out.stored == args.messages, (out.stored, out.quarantined)
        alerts = alerts_in(engine)
        engine.dispose()
        engine = fresh(tmp, "csv.db", args.patients)
        csv_payload = csv_text(args.messages, args.patients)
        csv_s, out = timed(lambda: ingest(engine, csv_payload, "csv"))
        assert out.quarantine_id is None, out.reason
        engine.dispose()
        new_v, old_v = history_cost(tmp, 25)
    rate = {
        "hl7_parse": n_values / parse_s,
        "sqlite_executemany": n_values / sqlite_s,
        "lab_monitor_hl7": n_values / hl7_s,
        "lab_monitor_csv": n_values / csv_s,
    }
    hl7_ratio = rate["lab_monitor_hl7"] / rate["hl7_parse"]
    history_ratio = old_v / new_v
    goals = {
        "hl7 >= 0.5x hl7.parse": hl7_ratio >= GOAL_HL7_RATIO,
        "csv >= 20,000 values/s": rate["lab_monitor_csv"] >= GOAL_CSV_RATE,
        "500-event history <= 1.5x new patient": history_ratio <= GOAL_HISTORY_RATIO,
    }
    print(
        f"{n_values:,} values ({args.messages:,} ORU, {args.patients:,} patients) on {db}, "
        f"drawn in the {12 * -(-args.messages // args.patients)} hours before now; "
        f"{alerts:,} alerts raised"
    )
    print(
        f"  lab-monitor HL7   {rate['lab_monitor_hl7']:>10,.0f} values/s  "
        f"hl7.parse alone {rate['hl7_parse']:,.0f}/s: {hl7_ratio:.2f}x (goal >= 0.5x)"
    )
    print(
        f"  lab-monitor CSV   {rate['lab_monitor_csv']:>10,.0f} values/s  goal >= 20,000/s; "
        f"bare sqlite3 executemany {rate['sqlite_executemany']:,.0f}/s: "
        f"{rate['lab_monitor_csv'] / rate['sqlite_executemany']:.3f}x"
    )
    print(
        f"  per value, 500 stored events {old_v * 1e3:.2f} ms, new patient {new_v * 1e3:.2f} ms: "
        f"{history_ratio:.2f}x (goal <= 1.5x)"
    )
    for goal, met in goals.items():
        print(f"  {'met   ' if met else 'MISSED'} {goal}")
    write_result(
        "ingest" if db == "sqlite" else f"ingest-{db}",
        {
            "database": db,
            "messages": args.messages,
            "patients": args.patients,
            "values": n_values,
            "alerts_raised": alerts,
            "rates_values_per_s": rate,
            "hl7_ratio": hl7_ratio,
            "per_value_s": {"new_patient": new_v, "history_500": old_v},
            "history_ratio": history_ratio,
            "goals": goals,
            "machine": machine(),
        },
    )
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
