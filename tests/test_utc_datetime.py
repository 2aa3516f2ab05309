"""UTC datetime columns: on SQLite our one-call conversion stores exactly the text
SQLAlchemy's DATETIME would (rows written before it, and raw SQL comparing times,
still agree), returns aware UTC, and refuses a naive datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME
from sqlalchemy.exc import StatementError

from monitor.store.db import make_engine
from monitor.store.types import UTCDateTime, sqlite_text

TIMES = [
    datetime(2026, 3, 5, 9, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 1, 2, 3, 4, tzinfo=UTC),
    datetime(2026, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),  # stored as UTC
]


@pytest.mark.parametrize("when", TIMES)
def test_the_stored_text_is_sqlalchemys(when: datetime) -> None:
    theirs = DATETIME().bind_processor(sqlite.dialect())
    assert theirs is not None
    assert sqlite_text(when) == theirs(when.astimezone(UTC).replace(tzinfo=None))


def test_round_trip_and_refusal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime())
    )
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "at": t} for i, t in enumerate(TIMES)])
        # a row as SQLAlchemy's own type wrote it, and one without microseconds
        conn.execute(text("INSERT INTO t VALUES (90, '2026-03-05 09:00:00.000000')"))
        conn.execute(text("INSERT INTO t VALUES (91, '2026-03-05 09:00:00')"))
        got = dict(conn.execute(select(table.c.id, table.c.at)).all())
        assert [got[i] for i in range(len(TIMES))] == TIMES
        assert all(t.tzinfo is UTC for t in got.values())
        assert got[90] == got[91] == TIMES[0]
        # compared as text in SQL, the order is the times' order
        later = conn.execute(select(table.c.id).where(table.c.at > TIMES[0])).scalars().all()
        assert sorted(later) == [1, 3, 4]
        with pytest.raises(StatementError, match="naive"):
            conn.execute(insert(table), {"id": 99, "at": datetime(2026, 1, 1)})
    engine.dispose()
