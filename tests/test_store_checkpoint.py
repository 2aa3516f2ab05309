"""SQLite commits are synced (synchronous=FULL) and the write-ahead log is checkpointed
by the daemon's own thread, not inside a commit: a connection's automatic checkpoint is
only a backstop, a PASSIVE checkpoint takes in every committed frame, and the daemon
starts the thread and stops it (with one last checkpoint) with itself."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from structlog.testing import capture_logs

from monitor.store.checkpoint import BACKSTOP_PAGES, THREAD_NAME, WalCheckpointer, sqlite_file
from monitor.store.db import make_engine

PAGE = 4096


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with e.begin() as c:
        c.execute(text("CREATE TABLE t (n INTEGER, pad BLOB)"))
    yield e  # type: ignore[misc]
    e.dispose()


def write_pages(engine: Engine, pages: int) -> None:
    """About `pages` pages of log, in commits of ~50 pages (as a busy writer makes)."""
    for _ in range(pages // 50):
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (1, randomblob(:n))"), [{"n": PAGE}] * 50)


def log_frames(path: Path) -> tuple[int, int, int]:
    """(busy, frames, checkpointed) from a PASSIVE checkpoint of another connection."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1]), int(row[2])


def test_commits_leave_the_log_to_the_checkpointer_up_to_the_backstop(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == BACKSTOP_PAGES
        # FULL (2): a commit, and the ACK after it, survives a crash of the machine
        assert c.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2
    # SQLite's default would have checkpointed (and so restarted the log) at 1,000
    write_pages(engine, 1_500)
    busy, frames, done = log_frames(tmp_path / "wal.db")
    assert busy == 0 and frames >= 1_500 and done == frames


def test_a_passive_checkpoint_takes_in_every_committed_frame(
    engine: Engine, tmp_path: Path
) -> None:
    write_pages(engine, 200)
    checkpointer = WalCheckpointer(str(tmp_path / "wal.db"))
    busy, frames, done = checkpointer.checkpoint() or (-1, -1, -1)
    assert busy == 0 and frames >= 200 and done == frames
    write_pages(engine, 100)  # the next writer starts the log again from its beginning
    busy, frames, done = checkpointer.checkpoint() or (-1, -1, -1)
    assert 100 <= frames < 200 and done == frames
    checkpointer.stop()
    assert checkpointer.runs == 3


def test_stop_ends_the_thread_and_checkpoints_what_was_left(engine: Engine, tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(str(tmp_path / "wal.db"), interval_s=3600)
    checkpointer.start()
    assert THREAD_NAME in {t.name for t in threading.enumerate()}
    write_pages(engine, 100)
    checkpointer.stop()
    assert THREAD_NAME not in {t.name for t in threading.enumerate()}
    assert checkpointer.runs == 1  # the interval never came: stop()'s own checkpoint
    busy, frames, done = log_frames(tmp_path / "wal.db")
    assert (busy, done) == (0, frames)


def test_a_failing_checkpoint_is_logged_once_until_one_works_again(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(str(tmp_path / "missing" / "wal.db"))
    with capture_logs() as logs:
        assert checkpointer.checkpoint() is None
        assert checkpointer.checkpoint() is None
        (tmp_path / "missing").mkdir()
        assert checkpointer.checkpoint() is not None
        checkpointer.stop()
        (tmp_path / "missing" / "wal.db").unlink()
        (tmp_path / "missing").rmdir()
        assert checkpointer.checkpoint() is None  # failing again: said again
    failed = [e for e in logs if e["event"] == "wal.checkpoint_failed"]
    assert len(failed) == 2 and failed[0]["log_level"] == "warning"


def test_only_a_sqlite_file_has_a_checkpointer(tmp_path: Path) -> None:
    memory = make_engine("sqlite://")
    other = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert WalCheckpointer.for_engine(memory) is None
        assert WalCheckpointer.for_engine(other) is None
        file_engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
        assert sqlite_file(file_engine) == str(tmp_path / "f.db")
        file_engine.dispose()
    finally:
        memory.dispose()
        other.dispose()
