"""The sweep's work list and the single-runner guard for sweep and escalation.

Due patients come in keyset-paged batches (next_check_at, id) until none is left,
so no cap per call leaves patients for the next interval, and a patient who stays
due (an evaluation error keeps its deadline) is never met twice in one sweep.
On PostgreSQL a session advisory lock keeps one sweep and one escalation pass at a
time across instances; released when its connection closes, so a killed holder
frees it at once. SQLite has one process by design and its one write lock.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import and_, or_, select, text
from sqlalchemy.engine import Engine
from sqlmodel import col

from monitor.store.db import session_scope
from monitor.store.models import PatientRow

SWEEP_BATCH = 500
ESCALATION_BATCH = 500  # escalate_due's own page size


def due_batches(engine: Engine, now: datetime, size: int = SWEEP_BATCH) -> Iterator[list[str]]:
    """Ids of patients due at `now`, a page at a time, each page read after the last
    was evaluated."""
    after: tuple[datetime, str] | None = None
    while True:
        stmt = (
            select(col(PatientRow.id), col(PatientRow.next_check_at))
            .where(col(PatientRow.next_check_at).is_not(None), col(PatientRow.next_check_at) <= now)
            .order_by(col(PatientRow.next_check_at), col(PatientRow.id))
            .limit(size)
        )
        if after is not None:
            at, pid = after
            stmt = stmt.where(
                or_(
                    col(PatientRow.next_check_at) > at,
                    and_(col(PatientRow.next_check_at) == at, col(PatientRow.id) > pid),
                )
            )
        with session_scope(engine) as session:
            rows = list(session.execute(stmt).all())
        if not rows:
            return
        yield [r[0] for r in rows]
        if len(rows) < size:
            return
        last = rows[-1]
        after = (last[1], last[0])


@contextmanager
def single_runner(engine: Engine, name: str) -> Iterator[bool]:
    """True when this instance may run job `name` now (always, except on PostgreSQL
    while another instance holds the job's advisory lock)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = zlib.crc32(f"lab-monitor:{name}".encode())
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
