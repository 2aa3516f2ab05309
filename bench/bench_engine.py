"""Speed goals of the pure core and the sweep, kept out of the test suite.

Run: .venv/bin/python bench/bench_engine.py
Goals (2-core machine): a two-year course of 300 events evaluated in under 250 ms
(a replay: a late or corrected result, a profile change); the 301st event continued
from the snapshot of the first 300 within 1.5x of a new patient's first event
(incremental evaluation, issue 10); a sweep over 2,000
patients with nothing due in under 100 ms (it reads only the next_check_at index).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.core.domain import DoseEvent, Event, LabEvent, Patient, SymptomEvent
from monitor.core.protocol import load_protocol
from monitor.engine import run

ROOT = Path(__file__).resolve().parents[1]
SEED = load_protocol(ROOT / "config" / "protocols" / "azathioprine-seed.toml")
T0 = datetime(2024, 1, 1, 9, tzinfo=UTC)


def course(n: int) -> tuple[Patient, list[Event]]:
    patient = Patient("B-1", 80.0, T0, 50.0, {"alt": 20.0, "ast": 20.0}, {}, 200.0, "normal")
    events: list[Event] = []
    t = T0
    for i in range(n):
        t += timedelta(days=2.4)
        if i % 25 == 7:
            events.append(DoseEvent(str(i), t, 50.0 + 25 * ((i // 25) % 3)))
        elif i % 40 == 13:
            events.append(SymptomEvent(str(i), t, frozenset({"fatigue"})))
        else:
            events.append(LabEvent(str(i), t, {"alt": 20.0 + i % 15, "ast": 22.0}))
    return patient, events


def timed(fn, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    from monitor.logging import configure_logging

    configure_logging(level="WARNING")
    patient, events = course(300)
    until = events[-1].at + timedelta(days=30)
    engine_s = timed(lambda: run(patient, events, until, SEED))
    print(f"engine: 300-event course in {engine_s * 1000:.1f} ms (goal < 250 ms)")
    snap = run(patient, events[:-1], events[-2].at, SEED).snapshot
    next_s = timed(lambda: run(patient, events[-1:], until, SEED, since=snap), repeat=51)
    first_s = timed(
        lambda: run(patient, events[:1], events[0].at + timedelta(days=30), SEED), repeat=51
    )
    ratio = next_s / first_s
    print(
        f"engine: event 301 from the snapshot {next_s * 1000:.2f} ms, a new patient's "
        f"first {first_s * 1000:.2f} ms: {ratio:.2f}x (goal <= 1.5x)"
    )

    from monitor.schemas import PatientIn
    from monitor.services.evaluate import due_patients
    from monitor.services.intake import enroll
    from monitor.store.db import make_engine, session_scope, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        db = make_engine(f"sqlite:///{tmp}/bench.db")
        upgrade(db)
        now = datetime.now(UTC)
        with session_scope(db) as s:
            for i in range(2000):
                enroll(
                    s,
                    PatientIn.model_validate(
                        {
                            "id": f"P{i}",
                            "weight_kg": 70,
                            "start": now.isoformat(),
                            "baseline": {"alt": 20, "ast": 20},
                            "tpmt": "normal",
                        }
                    ),
                    now,
                    {SEED.id: SEED},
                    SEED.id,
                )

        def sweep() -> None:
            with session_scope(db) as s:
                assert due_patients(s, now) == []

        sweep_s = timed(sweep)
        print(f"sweep: 2000 patients, none due, in {sweep_s * 1000:.1f} ms (goal < 100 ms)")
        db.dispose()
    ok = engine_s < 0.25 and sweep_s < 0.1 and ratio <= 1.5
    print("goals met" if ok else "GOALS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
