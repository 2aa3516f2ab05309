"""A scratch database per benchmark size: a SQLite file, or on PostgreSQL a database
created for the run and dropped afterwards, so figures never mix with old rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from monitor.store.db import make_engine


def _admin(db_url: str, sql: str) -> None:
    admin = create_engine(make_url(db_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def fresh_database(db_url: str, name: str) -> str:
    """The URL of an empty database `name` on db_url's server (dropped first if left over)."""
    _admin(db_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(db_url, f'CREATE DATABASE "{name}"')
    return make_url(db_url).set(database=name).render_as_string(hide_password=False)


def drop_database(db_url: str, name: str) -> None:
    _admin(db_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_engine(db_url: str | None, sqlite_path: Path, name: str) -> Iterator[Engine]:
    """An engine on an empty database: `sqlite_path`, or database `name` beside db_url's."""
    url = fresh_database(db_url, name) if db_url else f"sqlite:///{sqlite_path}"
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        if db_url:
            drop_database(db_url, name)
