"""On PostgreSQL too, the audit log refuses UPDATE and DELETE (the migration's trigger)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from monitor.store.db import make_engine, session_scope, upgrade
from monitor.web import audit

PG = os.environ.get("MONITOR_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG, reason="MONITOR_TEST_PG_URL not set (scripts/test sets it)"),
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    assert PG is not None
    name = f"labmon_web_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_audit_log_is_append_only_on_postgres(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    with session_scope(engine) as s:
        actor = audit.Actor("cora", "coordinator", "web", "127.0.0.1")
        audit.record(s, actor, "patient.view", datetime(2026, 3, 2, tzinfo=UTC), patient_id="P-1")
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalar_one() == "cora"
    engine.dispose()
