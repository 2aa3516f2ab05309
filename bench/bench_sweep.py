"""The deadline sweep at 100,000 and 1,000,000 enrolled patients, beside the bare due
query, measured in the same run.

Run: .venv/bin/python bench/bench_sweep.py [--quick] [--db-url URL]
Setup (not timed): one patient enrolled through the real path (`enroll`), its row
copied N times in one INSERT ... SELECT, then 1,000 of them spread through the table
made due. What is timed: `Service.sweep()` (the daemon's job: `due_batches`, then
`evaluate_patient` per due patient, alerts and deliveries committed), and beside it
the bare due query (the ids with `next_check_at <= now`, ordered, one SELECT).
Goals (issue 10): 1,000 due of 1,000,000 in < 500 ms, and within 1.2x of the
100,000 figure. With --db-url (PostgreSQL from scripts/ensure-postgres) the same on
that database; each size gets its own schema there, dropped afterwards.
Writes bench/results/sweep-<time>.json with the machine's description; exits 1 when a
goal is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text, update  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlmodel import col  # noqa: E402

from bench.machine import machine, shown, write_result  # noqa: E402
from bench.pgutil import scratch_engine  # noqa: E402
from monitor import heap  # noqa: E402
from monitor.clock import ManualClock  # noqa: E402
from monitor.daemon import Service, load_config  # noqa: E402
from monitor.schemas import PatientIn  # noqa: E402
from monitor.secrets import SecretSource  # noqa: E402
from monitor.services.intake import enroll  # noqa: E402
from monitor.store.db import session_scope, upgrade  # noqa: E402
from monitor.store.models import PatientRow  # noqa: E402

CONFIG = ROOT / "config" / "monitor.toml"
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
GOAL_MS, GOAL_RATIO = 500.0, 1.2
COLUMNS = [c.name for c in PatientRow.__table__.columns]  # type: ignore[attr-defined]


def quiet() -> None:
    """Info lines would time the terminal, not the service."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def populate(engine: Engine, n: int, due: int, now: datetime = NOW) -> list[str]:
    """n enrolled patients (one real enrolment copied), `due` of them due at `now`."""
    service = Service(load_config(str(CONFIG), SecretSource()), engine=engine)
    model = PatientIn.model_validate(
        {
            "id": "T",
            "weight_kg": 70,
            "start": (now - timedelta(days=20)).isoformat(),
            "tpmt": "normal",
            "baseline": {"alt": 20, "ast": 20},
        }
    )
    cfg = service.config
    with session_scope(engine) as s:
        enroll(s, model, now - timedelta(days=20), cfg.protocols, cfg.settings.default_protocol)
        s.execute(update(PatientRow).values(next_check_at=now + timedelta(days=30)))
    pg = engine.dialect.name == "postgresql"
    series = (
        "generate_series(0, :last) AS s(n)"
        if pg
        else "(WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < :last)"
        " SELECT n FROM c) AS s"
    )
    pid = "'S' || lpad(n::text, 8, '0')" if pg else "'S' || printf('%08d', n)"
    others = ", ".join(f"t.{c}" for c in COLUMNS if c != "id")
    cols = ", ".join(COLUMNS)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO patients ({cols}) SELECT {pid}, {others} "
                f"FROM {series} CROSS JOIN patients t WHERE t.id = 'T'"
            ),
            {"last": n - 2},
        )
        conn.execute(text("DELETE FROM alerts"))
    if not due:
        return []
    step = max(1, (n - 1) // due)
    ids = [f"S{i:08d}" for i in range(0, step * due, step)][:due]
    with session_scope(engine) as s:
        for start in range(0, len(ids), 500):
            s.execute(
                update(PatientRow)
                .where(col(PatientRow.id).in_(ids[start : start + 500]))
                .values(next_check_at=now - timedelta(minutes=5))
            )
    if pg:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE patients"))
    return ids


def bare_query_ms(engine: Engine, due: int) -> float:
    """The due query alone: the floor the sweep's own reads sit on."""
    stmt = (
        select(col(PatientRow.id))
        .where(col(PatientRow.next_check_at) <= NOW)
        .order_by(col(PatientRow.next_check_at), col(PatientRow.id))
        .limit(due + 1)
    )
    best = float("inf")
    for _ in range(5):
        with engine.connect() as conn:
            t0 = time.perf_counter()
            got = list(conn.execute(stmt).scalars())
            best = min(best, time.perf_counter() - t0)
    assert len(got) == due, f"expected {due} due, the query found {len(got)}"
    return best * 1000


def one_size(engine: Engine, n: int, due: int) -> dict[str, float]:
    t0 = time.perf_counter()
    upgrade(engine)
    ids = populate(engine, n, due)
    setup = time.perf_counter() - t0
    bare = bare_query_ms(engine, due)
    service = Service(
        load_config(str(CONFIG), SecretSource()), clock=ManualClock(NOW), engine=engine
    )
    heap.settle()  # as `monitor run` does once started
    t0 = time.perf_counter()
    raised = service.sweep()
    sweep_ms = (time.perf_counter() - t0) * 1000
    with session_scope(engine) as s:
        left = s.execute(
            select(func.count()).select_from(PatientRow).where(col(PatientRow.next_check_at) <= NOW)
        ).scalar_one()
        judged = s.execute(
            select(func.count())
            .select_from(PatientRow)
            .where(col(PatientRow.id).in_(ids[:500]), col(PatientRow.evaluated_at) == NOW)
        ).scalar_one()
    return {
        "patients": n,
        "due": due,
        "sweep_ms": sweep_ms,
        "bare_due_query_ms": bare,
        "alerts_raised": len(raised),
        "still_due_after": int(left),
        "evaluated_of_first_500": int(judged),
        "setup_s": setup,
    }


def run(db_url: str | None, sizes: list[int], due: int) -> list[dict[str, float]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for n in sizes:
            with scratch_engine(db_url, Path(tmp) / f"sweep-{n}.db", f"bench_sweep_{n}") as engine:
                out.append(one_size(engine, n, due))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 and 100,000, 100 due")
    ap.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"))
    ap.add_argument("--due", type=int)
    ap.add_argument("--db-url", help="a PostgreSQL URL (scripts/ensure-postgres prints one)")
    args = ap.parse_args(argv)
    quiet()
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [100_000, 1_000_000])
    due = args.due or (100 if args.quick else 1_000)
    small, large = run(args.db_url, list(sizes), due)
    db = "postgresql" if args.db_url else "sqlite"
    ratio = large["sweep_ms"] / small["sweep_ms"]
    all_judged = all(r["still_due_after"] == 0 for r in (small, large))
    ok_ms = large["sweep_ms"] < GOAL_MS
    ok_ratio = ratio <= GOAL_RATIO
    print(f"sweep on {db}, {due:,} due (setup {small['setup_s']:.0f} s + {large['setup_s']:.0f} s)")
    for r in (small, large):
        print(
            f"  {int(r['patients']):>9,} enrolled: sweep {r['sweep_ms']:8.1f} ms  beside the "
            f"bare due query {r['bare_due_query_ms']:6.2f} ms  ({int(r['alerts_raised'])} alerts)"
        )
    print(
        f"  goal {large['patients']:,.0f} < {GOAL_MS:.0f} ms: {'met' if ok_ms else 'MISSED'}; "
        f"ratio to {small['patients']:,.0f} {ratio:.2f}x (goal <= {GOAL_RATIO}x): "
        f"{'met' if ok_ratio else 'MISSED'}; every due patient judged: "
        f"{'yes' if all_judged else 'NO'}"
    )
    path = write_result(
        f"sweep-{db}",
        {
            "machine": machine(),
            "database": db,
            "sizes": [small, large],
            "ratio_large_to_small": ratio,
            "goals": {"large_ms": GOAL_MS, "ratio": GOAL_RATIO},
            "met": {"large_ms": ok_ms, "ratio": ok_ratio, "all_judged": all_judged},
        },
    )
    print(f"  written to {shown(path)}")
    return 0 if ok_ms and ok_ratio and all_judged else 1


if __name__ == "__main__":
    sys.exit(main())
