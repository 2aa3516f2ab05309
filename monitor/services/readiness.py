"""Readiness: can this process do its job now? Each failed check is a reason in words.

`/readyz` answers 503 with the reasons when any fails: the database answers, its
schema is at this version's migration head, and (in the daemon) the scheduler runs,
the last deadline sweep is recent (`[daemon] ready_sweep_age_s`, default three
sweeps plus a minute) and no delivery has waited longer than
`[daemon] outbox_stuck_s` past its due time. The systemd watchdog is fed only while
the scheduler is alive and sweeping (`alive`), so a hung or sweep-less daemon is
restarted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from monitor.store.models import DeliveryRow


def sweep_age_limit(raw: Mapping[str, Any]) -> timedelta:
    daemon = raw.get("daemon", {})
    limit = daemon.get("ready_sweep_age_s")
    if limit is None:
        limit = 3 * float(daemon.get("sweep_seconds", 60)) + 60
    return timedelta(seconds=float(limit))


@lru_cache(maxsize=1)
def code_heads() -> frozenset[str]:
    """The migration heads this version ships (read once: the files do not change)."""
    from alembic.script import ScriptDirectory

    from monitor.store.db import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _heads(engine: Engine) -> tuple[set[str], set[str]]:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current, set(code_heads())


def sweep_problem(
    last_sweep: datetime | None, started: datetime, now: datetime, limit: timedelta
) -> str | None:
    """Why the sweep is not keeping up, or None."""
    if last_sweep is None:
        if now - started > limit:
            return f"no deadline sweep has finished since the start {now - started} ago"
        return None
    age = now - last_sweep
    if age > limit:
        return (
            f"the last deadline sweep finished {int(age.total_seconds())} s ago "
            f"(limit {int(limit.total_seconds())} s)"
        )
    return None


def not_ready(
    engine: Engine,
    raw: Mapping[str, Any],
    now: datetime,
    scheduler: Any = None,
    scheduler_here: bool = False,
    last_sweep: datetime | None = None,
    started: datetime | None = None,
) -> list[str]:
    """The reasons this process is not ready; empty when it is."""
    reasons: list[str] = []
    try:
        current, heads = _heads(engine)
    except SQLAlchemyError as exc:
        from monitor.startup import db_error_line

        return [f"database unreachable ({db_error_line(exc)})"]
    if current != heads:
        reasons.append(
            f"database schema at {', '.join(sorted(current)) or 'nothing'}, this version needs "
            f"{', '.join(sorted(heads))}: run `monitor db upgrade`"
        )
    if scheduler_here:
        if scheduler is None or not scheduler.running:
            reasons.append("scheduler not running")
        else:
            why = sweep_problem(last_sweep, started or now, now, sweep_age_limit(raw))
            if why:
                reasons.append(why)
    stuck_s = float(raw.get("daemon", {}).get("outbox_stuck_s", 600))
    try:
        with Session(engine) as session:
            stuck, oldest = session.exec(
                select(func.count(), func.min(DeliveryRow.next_attempt_at)).where(
                    col(DeliveryRow.state).in_(["pending", "sending"]),
                    col(DeliveryRow.next_attempt_at) < now - timedelta(seconds=stuck_s),
                )
            ).one()
    except SQLAlchemyError as exc:
        from monitor.startup import db_error_line

        return [*reasons, f"database unreachable ({db_error_line(exc)})"]
    if stuck:
        reasons.append(
            f"outbox stuck: {stuck} delivery(ies) due more than {int(stuck_s)} s ago, "
            f"the oldest since {oldest}"
        )
    return reasons
