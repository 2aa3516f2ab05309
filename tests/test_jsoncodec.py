"""The store's JSON columns through orjson read back as the standard library's did."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.store import jsoncodec
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.tables import INBOUND

PAYLOAD = {
    "results": {"alt": 640.0, "ast": 300, "bilirubin": 12.5},
    "units": {"alt": "U/L"},
    "note": "ALT élevée, résultat corrigé \u2013 voir OBX-5",
    "flags": [True, False, None],
    "held": [],
    "corrected": False,
}


def test_what_is_written_reads_back_as_json_would_read_it() -> None:
    for value in (PAYLOAD, [1, 2.5, "x"], {}, "text", 3, None, {"nested": {"a": [{"b": 1}]}}):
        assert jsoncodec.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value))
    assert jsoncodec.loads(jsoncodec.dumps({1: "a", 2.5: "b"})) == {"1": "a", "2.5": "b"}


def test_a_value_json_has_no_type_for_is_refused_not_turned_into_a_string() -> None:
    with pytest.raises(TypeError, match="datetime"):
        jsoncodec.dumps({"at": datetime(2026, 1, 1, tzinfo=UTC)})


def test_rows_written_by_json_dumps_before_still_read_nan_included() -> None:
    old = json.dumps({"value": float("nan"), "x": 1})  # 'NaN' is not JSON; orjson refuses it
    value = jsoncodec.loads(old)
    assert math.isnan(value["value"]) and value["x"] == 1


def test_the_engine_stores_json_columns_through_the_codec(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'j.db'}")
    upgrade(engine)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope(engine) as s:
        s.execute(
            text(
                "INSERT INTO inbound_messages (source, sender, message_id, received_at, raw, "
                "outcome, detail) VALUES ('mllp', 'LAB', 'M1', :t, 'raw', 'stored', :d)"
            ),
            {"t": t.isoformat(), "d": json.dumps({"patient_id": "P-1", "ratio": float("nan")})},
        )
    with session_scope(engine) as s:  # a row json.dumps wrote: read, NaN and all
        row = s.execute(INBOUND.select()).one()
        assert row.detail["patient_id"] == "P-1" and math.isnan(row.detail["ratio"])
        s.execute(INBOUND.update().values(detail=PAYLOAD))
    with engine.connect() as c:
        [stored] = c.execute(text("SELECT detail FROM inbound_messages")).scalars()
    assert json.loads(stored) == PAYLOAD and stored == jsoncodec.dumps(PAYLOAD)
    engine.dispose()
