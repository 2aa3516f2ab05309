"""On PostgreSQL too, the audit log refuses UPDATE and DELETE (the migration's trigger)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from monitor.store.db import make_engine, session_scope, upgrade
from monitor.web import audit
from tests.conftest import PG

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG, reason="MONITOR_TEST_PG_URL not set (scripts/test sets it)"),
]


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
