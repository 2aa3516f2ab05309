"""SQLite transactions of one process queue on a per-file gate instead of SQLite's
sleeping busy handler: held from BEGIN to COMMIT or ROLLBACK (or close), never
leaked by a failed BEGIN, and bounded by the busy timeout like SQLite's own lock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from monitor.store import db
from monitor.store.db import make_engine


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with e.begin() as c:
        c.execute(text("CREATE TABLE t (n INTEGER)"))
    yield e  # type: ignore[misc]
    e.dispose()


def gate(tmp_path: Path) -> threading.Lock:
    return db._gate_for(str(tmp_path / "gate.db"))


def test_held_from_begin_to_commit_and_to_rollback(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
        assert gate(tmp_path).locked()
    assert not gate(tmp_path).locked()
    with pytest.raises(RuntimeError), engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("rolled back")
    assert not gate(tmp_path).locked()
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 1


def test_a_second_thread_waits_its_turn_and_then_goes(engine: Engine, tmp_path: Path) -> None:
    order: list[str] = []
    inside = threading.Event()
    other_started = threading.Event()

    def second() -> None:
        other_started.set()
        with engine.begin() as c:
            order.append("second")
            c.execute(text("INSERT INTO t VALUES (2)"))

    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
        inside.set()
        t = threading.Thread(target=second)
        t.start()
        other_started.wait(5)
        t.join(0.2)  # it cannot get in while this transaction is open
        assert t.is_alive() and order == []
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]
    assert not gate(tmp_path).locked()


def test_a_connection_closed_inside_its_transaction_lets_go(engine: Engine, tmp_path: Path) -> None:
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    assert gate(tmp_path).locked()
    conn.invalidate()  # what the group writer does after a failed commit
    assert not gate(tmp_path).locked()
    with engine.begin() as c:
        assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 0


def test_waiting_is_bounded_like_sqlites_own_lock(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.05)
    failed: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as c:
                c.execute(text("INSERT INTO t VALUES (2)"))
        except OperationalError as exc:
            failed.append(exc)

    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
        t = threading.Thread(target=second)
        t.start()
        t.join(5)
    assert failed and isinstance(failed[0].orig, sqlite3.OperationalError)
    assert "locked" in str(failed[0])
    assert not gate(tmp_path).locked(), "a BEGIN that never got the gate holds nothing"


def test_a_session_closed_without_commit_lets_go(engine: Engine, tmp_path: Path) -> None:
    """The pool's reset on return rolls back: the gate goes with it."""
    from sqlmodel import Session

    session = Session(engine)
    session.execute(text("INSERT INTO t VALUES (1)"))
    assert gate(tmp_path).locked()
    session.close()
    assert not gate(tmp_path).locked()
    with engine.begin() as c:
        assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
