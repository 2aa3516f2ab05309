"""The dispatcher's hottest writes, run on the DBAPI cursor with ready-made values.

Why: for a statement run once per row of a batch (`executemany`), SQLAlchemy builds a
dict of parameters and runs a type processor per value, in Python, for every row. In a
burst the dispatcher settles 200 sends a batch: that preparation was ~60% of a
settle's CPU, and the process is bound by one interpreter's CPU (the GIL) shared with
the sends. These statements take tuples of values already in the driver's form
(`bind_time` for datetimes) and go to the cursor as they are: a settle costs about
half the CPU (tests/dispatch and tests/daemon run them on SQLite,
tests/daemon/test_postgres.py on PostgreSQL).

The SQL is written once, in the dialect both databases accept, with `?` placeholders
(rewritten to `%s` for a `format`/`pyformat` driver such as psycopg). Everything else
stays SQLAlchemy Core or ORM: only a statement shown to matter in a profile belongs
here.

On PostgreSQL, an INSERT ... RETURNING of many rows (the batch evaluator's alerts)
goes to psycopg's own `executemany(..., returning=True)`: one short statement text,
sent for every row in one pipeline. SQLAlchemy renders such a batch as one
multi-row VALUES (52 KB of text for 100 alerts), which psycopg has to split into its
parts on every execution (the text is too long to be cached): ~8 ms per 100 alerts
against ~3.7 ms, about a tenth of a 1,000-patient sweep (`pg_insert_each`, tested in
tests/test_evaluate_batch.py on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from monitor.store.types import sqlite_text

__all__ = ["bind_time", "executemany", "insert_returning", "pg_insert_each"]

_SQL: dict[tuple[str, str], str] = {}


def _placeholders(dialect: Dialect, sql: str) -> str:
    return sql if dialect.paramstyle == "qmark" else sql.replace("?", "%s")


def _for(dialect: Dialect, sql: str) -> str:
    """`_placeholders`, remembered for a fixed statement text."""
    key = (dialect.paramstyle, sql)
    hit = _SQL.get(key)
    if hit is None:
        hit = _SQL[key] = _placeholders(dialect, sql)
    return hit


def bind_time(dialect: Dialect, value: datetime) -> datetime | str:
    """A UTC datetime as `UTCDateTime` would hand it to this driver."""
    return sqlite_text(value) if dialect.name == "sqlite" else value


def executemany(session: Session, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`sql` once per row, in the session's transaction."""
    if rows:
        connection = session.connection()
        connection.exec_driver_sql(_for(connection.dialect, sql), list(rows))


def insert_returning(
    session: Session, head: str, rows: Sequence[tuple[Any, ...]], returning: str
) -> Sequence[Any]:
    """One multi-row `INSERT <head> VALUES (...), (...) RETURNING <returning>` (rows in
    no particular order: match them back by a returned key)."""
    if not rows:
        return []
    width = len(rows[0])
    group = "(" + ", ".join("?" * width) + ")"
    sql = f"INSERT INTO {head} VALUES {', '.join([group] * len(rows))} RETURNING {returning}"
    connection = session.connection()
    flat = tuple(value for row in rows for value in row)
    # not remembered: one text per batch size
    return connection.exec_driver_sql(_placeholders(connection.dialect, sql), flat).all()


def pg_insert_each(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], tail: str
) -> list[tuple[Any, ...]]:
    """PostgreSQL: `INSERT INTO <table> (<columns of rows[0]>) VALUES (...) <tail>` for
    each row, through psycopg's executemany with returning (one pipeline); the rows
    every execution returned (none for a row `ON CONFLICT ... DO NOTHING` skipped).
    Values go through each column type's bind processor, as SQLAlchemy's would (JSON
    through the engine's serializer, UTC datetimes checked)."""
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    names = list(rows[0])
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)})"
        f" VALUES ({', '.join(['%s'] * len(names))}) {tail}"
    )
    processors = [table.c[n].type.bind_processor(dialect) for n in names]
    params = [
        tuple(v if p is None else p(v) for p, v in zip(processors, row.values(), strict=True))
        for row in rows
    ]
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, params, returning=True)  # type: ignore[call-arg]
        out: list[tuple[Any, ...]] = []
        while True:
            out.extend(cursor.fetchall())
            if not cursor.nextset():
                return out
    finally:
        cursor.close()
