"""Migration 0010: events stored before it learn their inbound message, so a new version
of an old message still replaces them (and nothing else)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from monitor.store.db import alembic_config, make_engine

T = "2026-01-02 00:00:00.000000"


def test_upgrade_links_old_events_and_downgrade_returns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "0009")
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "insert into patients (id, weight_kg, start, start_dose_mg, tpmt, baseline, uln,"
                " protocol_id, enrolled_at) values ('P-1', 70, :t, 50, 'normal', '{}', '{}',"
                " 'x', :t)"
            ),
            {"t": T},
        )
        for ref in ("M1@abc#0", "M2@def#0"):
            c.execute(
                sa.text(
                    "insert into events (patient_id, kind, at, recorded_at, payload, source,"
                    " source_ref) values ('P-1', 'lab', :t, :t, '{}', 'hl7', :ref)"
                ),
                {"t": T, "ref": ref},
            )
        c.execute(
            sa.text(
                "insert into inbound_messages (source, message_id, received_at, raw, outcome,"
                " detail) values ('hl7', 'M1', :t, 'x', 'stored', :d)"
            ),
            {"t": T, "d": json.dumps({"events": [1], "patient_id": "P-1"})},
        )
    command.upgrade(cfg, "head")
    with engine.begin() as c:
        linked = c.execute(sa.text("select id, inbound_id from events order by id")).all()
        sender = c.execute(sa.text("select sender from inbound_messages")).scalar_one()
    assert [tuple(r) for r in linked] == [(1, 1), (2, None)]
    assert sender == ""
    command.downgrade(cfg, "0009")
    engine.dispose()
