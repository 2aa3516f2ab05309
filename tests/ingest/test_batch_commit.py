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


def test_a_csv_message_stores_only_its_own_patients_rows(engine) -> None:  # type: ignore[no-untyped-def]
    """Each patient's message keeps the header and its own rows as raw text: a file
    naming many patients is stored once in total, not once per patient."""
    from sqlmodel import select

    from monitor.store.models import InboundMessageRow

    enrol(engine, "P-1", ["HOSP|M1"], NOW - timedelta(days=60))
    enrol(engine, "P-2", ["HOSP|M2"], NOW - timedelta(days=60))
    at = (NOW - timedelta(days=1)).isoformat()
    text = "patient_id,id_system,analyte,value,unit,observed_at\n" + "".join(
        f"M{p},HOSP,alt,{20 + p},U/L,{at}\n" for p in (1, 2)
    )
    with session_scope(engine) as s:
        out = ingest_payload(
            s, text, "csv", "csv", NOW, PROTOCOLS, ROUTING, MAPPING, source_name="f", whole=True
        )
        assert out.stored == 2
        raws = sorted(r.raw or "" for r in s.exec(select(InboundMessageRow)))
    assert [r.count("\n") for r in raws] == [2, 2]
    assert "M1,HOSP,alt,21" in raws[0] and "M2" not in raws[0]
    assert "M2,HOSP,alt,22" in raws[1] and "M1" not in raws[1]
