"""A scratch database per benchmark size: a SQLite file, or on PostgreSQL a database
created for the run and dropped afterwards, so figures never mix with old rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from monitor.store.db import make_engine


@contextmanager
def scratch_engine(db_url: str | None, sqlite_path: Path, name: str) -> Iterator[Engine]:
    """An engine on an empty database: `sqlite_path`, or database `name` beside db_url's."""
    if not db_url:
        engine = make_engine(f"sqlite:///{sqlite_path}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    url = make_url(db_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(url.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
