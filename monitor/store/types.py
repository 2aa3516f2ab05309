"""Column types: timezone-aware UTC datetimes on every database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["UTCDateTime", "sqlite_text"]


def _to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is refused rather than guessed at."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    """A stored datetime as aware UTC (naive ones were stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_text(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores for an aware datetime (naive UTC,
    always six digits of microseconds), made by one C call instead of a format string
    over a dict: every claim, settle and event row binds a few of these."""
    return _to_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _from_sqlite(value: str | None) -> datetime | None:
    return None if value is None else _as_utc(datetime.fromisoformat(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware UTC; refuses naive datetimes instead of guessing.

    On SQLite the conversion to and from the stored text is one function each way
    (`sqlite_text`, `datetime.fromisoformat`) rather than ours followed by the dialect's:
    the same text, at about a third of the cost on the hottest binds."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            return None if value is None else sqlite_text(value)

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _from_sqlite

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        return None if value is None else _to_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return _as_utc(value)
