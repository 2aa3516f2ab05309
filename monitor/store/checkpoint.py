"""SQLite's WAL checkpoints on a thread of their own, off the commit path.

Left to itself, SQLite checkpoints inside the COMMIT that takes the write-ahead log
past 1,000 pages: that commit then copies the pages into the database file and
syncs it. With stop values over MLLP at 5 msg/s about one group-writer commit in 30
took 5.5-7.5 ms instead of ~0.2 ms, and those messages made the p99. The daemon
runs a PASSIVE checkpoint every `interval_s` on a connection of its own (a passive
checkpoint never waits for, or blocks, a reader or a writer), so commits only
append to the log. Every connection keeps SQLite's own automatic checkpoint as a
backstop at `BACKSTOP_PAGES` (`store/db.py`), so the log stays bounded when this
thread falls behind or is not running (the CLI, tests).
"""

from __future__ import annotations

import sqlite3
import threading

import structlog
from sqlalchemy.engine import Engine

log = structlog.get_logger(__name__)

# SQLite's automatic checkpoint, per connection, in pages (4 KiB each by default):
# reached only when nobody else checkpoints.
BACKSTOP_PAGES = 10_000
INTERVAL_S = 0.25
THREAD_NAME = "wal-checkpoint"


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a file-backed SQLite engine; None for any other."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    return path if path and path != ":memory:" else None


class WalCheckpointer:
    """Checkpoints one SQLite file's log every `interval_s` until stopped."""

    def __init__(self, path: str, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._failing = False

    @classmethod
    def for_engine(cls, engine: Engine, interval_s: float = INTERVAL_S) -> WalCheckpointer | None:
        path = sqlite_file(engine)
        return cls(path, interval_s) if path is not None else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread, then checkpoint once more: what the last commits wrote."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.checkpoint()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint: (busy, frames in the log, frames checkpointed) as
        SQLite reports them, or None when it failed (logged once until it works again;
        the connections' own backstop still bounds the log)."""
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("wal.checkpoint_failed", error=type(exc).__name__, detail=str(exc))
            self._failing = True
            return None
        if self._failing:
            log.info("wal.checkpoint_recovered")
        self._failing = False
        self.runs += 1
        busy, frames, done = row
        return int(busy), int(frames), int(done)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.checkpoint()
