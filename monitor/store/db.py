"""Engines, sessions and migrations.

SQLite is the embedded default (WAL so readers never block the daemon, foreign keys
on, a busy timeout so the CLI and the daemon can write the same file); any other
SQLAlchemy URL is accepted. The schema is Alembic's: `upgrade()` brings any
database to the latest revision.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as exc_types
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

import monitor.store.accounts  # noqa: F401  (the console's tables)
from monitor.store import (
    jsoncodec,
    models,  # noqa: F401  (registers the tables)
)
from monitor.store.checkpoint import BACKSTOP_PAGES

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
BUSY_TIMEOUT_S = 10.0  # SQLite's busy timeout, and how long a thread waits for the gate
_GATES: dict[str, threading.Lock] = {}  # one per database file in this process
_GATES_LOCK = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # We issue BEGIN ourselves (below): pysqlite's own would start transactions late
    # and as DEFERRED, so two writers could both read, then clash on insert.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    # a backstop: the daemon checkpoints on a thread of its own (store/checkpoint.py)
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cur.close()


def _gate_for(path: str) -> threading.Lock:
    with _GATES_LOCK:
        return _GATES.setdefault(str(Path(path).resolve()), threading.Lock())


class GatedConnection(sqlite3.Connection):
    """A SQLite connection whose transactions queue on a per-file lock within this
    process, taken before BEGIN IMMEDIATE and released after COMMIT or ROLLBACK (or
    close). SQLite's busy handler polls with growing sleeps (up to 100 ms), so a
    thread waiting behind a short transaction slept on long after the file was free:
    with the group writer and the dispatcher taking turns, stop values over MLLP at
    200 msg/s reached the webhook at p50 1.3 s, p99 2.5-3.6 s; handed over at once,
    at p50 40-54 ms, p99 107-175 ms. Another process (the CLI beside the daemon)
    still meets SQLite's busy timeout."""

    gate: threading.Lock | None = None
    gated = False

    def enter(self) -> None:
        if self.gate is None or self.gated:
            return
        if not self.gate.acquire(timeout=BUSY_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked (by another thread)")
        self.gated = True

    def leave(self) -> None:
        if self.gated:
            self.gated = False
            assert self.gate is not None
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave()


def _sqlite_begin_immediate(conn: Any) -> None:
    """Take SQLite's write lock at the start of every transaction: evaluations of one
    patient then run one after the other (what SELECT ... FOR UPDATE does elsewhere)."""
    raw = conn.connection.driver_connection
    gated = isinstance(raw, GatedConnection)
    if gated:
        try:
            raw.enter()
        except sqlite3.OperationalError as exc:  # as SQLite's own busy timeout reads
            raise exc_types.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if gated:
            raw.leave()
        raise


# JSON columns through orjson (store/jsoncodec.py), on every engine
_JSON: dict[str, Any] = {"json_serializer": jsoncodec.dumps, "json_deserializer": jsoncodec.loads}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = create_engine(
                "sqlite://",
                connect_args={"check_same_thread": False},
                poolclass=StaticPool,
                **_JSON,
            )
        else:
            path = url.split("///", 1)[-1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            gate = _gate_for(path)

            def gated(dbapi_conn: Any, _record: Any) -> None:
                if isinstance(dbapi_conn, GatedConnection):
                    dbapi_conn.gate = gate

            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "factory": GatedConnection},
                **_JSON,
            )
            event.listen(engine, "connect", gated)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, **_JSON)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Migrate the database to the latest revision (idempotent).

    On SQLite, foreign keys are off while tables are rebuilt (the only way SQLite
    changes a column) and checked once the migration is done.
    """
    cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        if sqlite:
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, or ignored
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        if sqlite:
            assert raw is not None
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            raw.execute("PRAGMA foreign_keys=ON")
            if broken:
                raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")


def create_all(engine: Engine) -> None:
    """Schema straight from the models, for throw-away in-memory stores (replay)."""
    SQLModel.metadata.create_all(engine)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
