"""Numbers, reference ranges and times as senders write them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.sources.values import (
    parse_hl7_ts,
    parse_iso_datetime,
    parse_measurement,
    parse_range_high,
    resolve_tz,
)


@pytest.mark.parametrize(
    ("text", "value", "comparator"),
    [
        ("58", 58, None),
        (".3", 0.3, None),
        ("0.87", 0.87, None),
        ("<5", 5, "<"),
        ("> 1000", 1000, ">"),
        ("<=5", 5, "<="),
        ("=12", 12, None),
        ("≥3", 3, ">="),
    ],
)
def test_measurements(text: str, value: float, comparator: str | None) -> None:
    assert parse_measurement(text) == (value, comparator)


@pytest.mark.parametrize("text", ["", "=", "abc", "1e5", "5,3", "nan", "inf", "-1", "9" * 400])
def test_not_measurements(text: str) -> None:
    with pytest.raises(ValueError):
        parse_measurement(text)


@pytest.mark.parametrize(
    ("text", "high", "readable"),
    [
        ("7-56", 56, True),
        ("0.0-1.2", 1.2, True),
        ("<45", 45, True),
        (">59", None, True),
        ("", None, True),
        ("10 to 50", 50, True),
        ("0-0", None, False),
        ("N", None, False),
        ("<0", None, False),
    ],
)
def test_ranges(text: str, high: float | None, readable: bool) -> None:
    result = parse_range_high(text)
    assert (result.high, result.readable) == (high, readable)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20150821", datetime(2015, 8, 21, tzinfo=UTC)),
        ("201307241746", datetime(2013, 7, 24, 17, 46, tzinfo=UTC)),
        ("20141225120030.1234-0500", datetime(2014, 12, 25, 17, 0, 30, 123400, tzinfo=UTC)),
        ("2024030108+0100", datetime(2024, 3, 1, 7, tzinfo=UTC)),
    ],
)
def test_hl7_timestamps(text: str, expected: datetime) -> None:
    assert parse_hl7_ts(text, UTC) == expected


@pytest.mark.parametrize(
    "text", ["2014", "201412", "20141301", "20140230", "2014-12-01", "20141201+2500", "x"]
)
def test_bad_hl7_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hl7_ts(text, UTC)


def test_iso_and_timezones() -> None:
    london = resolve_tz("Europe/London")
    assert parse_iso_datetime("2024-07-01", london) == datetime(2024, 6, 30, 23, tzinfo=UTC)
    assert parse_iso_datetime("2024-07-01T10:00:00Z", london) == datetime(
        2024, 7, 1, 10, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        resolve_tz("Nowhere/Else")
