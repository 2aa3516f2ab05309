"""`monitor ingest` commits a back-load in batches: one commit per batch of messages,
not per message (issue 10, point 1), and every message of the file is stored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from monitor.services.payloads import ingest_payload
from monitor.store.db import session_scope
from tests.ingest.test_ingest import (
    MAPPING,
    NOW,
    PROTOCOLS,
    ROUTING,
    engine,
    enrol,
    hl7,
    lab_events,
)

__all__ = ["engine"]


def test_a_back_load_commits_once_per_batch(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP|M1"], NOW - timedelta(days=60))
    payload = "".join(
        hl7(f"B{i}", "M1", NOW - timedelta(days=50 - i), alt=20 + i) for i in range(5)
    )
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    with session_scope(engine) as s:
        out = ingest_payload(
            s, payload, "hl7", "file:hl7", NOW, PROTOCOLS, ROUTING, MAPPING, commit_every=2
        )
    assert out.stored == 5
    assert len(commits) == 3  # after messages 2 and 4, and the rest at the end
    assert sorted(e.payload["results"]["alt"] for e in lab_events(engine)) == [
        20.0,
        21.0,
        22.0,
        23.0,
        24.0,
    ]
