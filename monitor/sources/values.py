"""Reading the small things every format shares: numbers, reference ranges, times.

Each reader either returns a value or raises `ValueError` whose message is the
plain-words reason the caller puts in a `Problem`. Nothing here guesses: a value
that does not read cleanly is refused, not approximated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")
_COMPARED_RE = re.compile(rf"^(<=|>=|<|>|=|≤|≥)?\s*({_NUMBER})$")
_RANGE_RE = re.compile(rf"^({_NUMBER})\s*(?:-|–|to)\s*({_NUMBER})$", re.IGNORECASE)
_UPPER_ONLY_RE = re.compile(rf"^(?:<=|<|≤)\s*({_NUMBER})$")
_LOWER_ONLY_RE = re.compile(rf"^(?:>=|>|≥)\s*({_NUMBER})$")
_HL7_TS_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)
_COMPARATORS = {"≤": "<=", "≥": ">=", "=": None}
# No lab value or limit comes near this; above it a number is a sender error (and
# converting it could overflow).
MAX_PLAUSIBLE = 1e9


def plausible(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_PLAUSIBLE


def parse_number(text: str) -> float:
    """A plain decimal number (``58``, ``.3``, ``0.87``); no exponent, no comparator."""
    t = text.strip()
    if not _NUMBER_RE.match(t):
        raise ValueError(f"{text!r} is not a number")
    value = float(t)
    if not plausible(value):
        raise ValueError(f"{text!r} is too large to be a lab value")
    return value


def parse_measurement(text: str) -> tuple[float, str | None]:
    """A result value with an optional comparator: ``58``, ``<5``, ``>= 1000``.

    Returns (number, comparator or None). A negative result is refused: no liver
    test can be below zero, so it is a sender error, not a value.
    """
    t = text.strip()
    m = _COMPARED_RE.match(t)
    if not m:
        raise ValueError(f"{text!r} is not a number")
    comparator = m.group(1)
    if comparator in _COMPARATORS:
        comparator = _COMPARATORS[comparator]
    value = parse_number(m.group(2))
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value, comparator


@dataclass(frozen=True)
class RangeHigh:
    """The upper limit a reference range gives, or None (no limit, or not readable)."""

    high: float | None
    readable: bool


def parse_range_high(text: str) -> RangeHigh:
    """The ULN in a range text: ``7-56`` -> 56, ``<45`` -> 45, ``>59`` -> no upper limit.

    An empty range is readable with no ULN; a text that is none of these forms is
    not readable (the caller reports it and leaves the ULN empty).
    """
    t = " ".join(text.split())
    if not t:
        return RangeHigh(None, True)
    m = _RANGE_RE.match(t)
    if m:
        low, high = float(m.group(1)), float(m.group(2))
        if not (plausible(low) and plausible(high)) or high <= 0 or high < low:
            return RangeHigh(None, False)
        return RangeHigh(high, True)
    m = _UPPER_ONLY_RE.match(t)
    if m:
        high = float(m.group(1))
        return RangeHigh(high, True) if plausible(high) and high > 0 else RangeHigh(None, False)
    if _LOWER_ONLY_RE.match(t):
        return RangeHigh(None, True)
    return RangeHigh(None, False)


# --- time ----------------------------------------------------------------------


def resolve_tz(name: str) -> tzinfo:
    """The timezone naive times are assumed to be in (``UTC``, ``Europe/London``...).

    Raises ValueError for an unknown name: that is a configuration error, found
    before any message is read.
    """
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def as_utc(moment: datetime, assume_tz: tzinfo) -> datetime:
    """An aware UTC datetime; a naive one is read in `assume_tz`."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        moment = moment.replace(tzinfo=assume_tz)
    return moment.astimezone(UTC)


def date_as_utc(day: date, assume_tz: tzinfo) -> datetime:
    """Midnight at the start of `day` in `assume_tz`, in UTC (a date-only time)."""
    return as_utc(datetime(day.year, day.month, day.day), assume_tz)


def parse_hl7_ts(text: str, assume_tz: tzinfo) -> datetime:
    """An HL7 TS/DTM (``20150821``, ``201307241746``, ``20141225120030.1234-0500``) in UTC.

    At least a full date is required: a result dated only to the month cannot be
    put on a timeline. An offset is honoured; without one `assume_tz` applies.
    """
    t = text.strip()
    m = _HL7_TS_RE.match(t)
    if not m:
        raise ValueError(f"{text!r} is not an HL7 date/time")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    if month is None or day is None:
        raise ValueError(f"{text!r} is not a full date (day missing)")
    micro = int((fraction or "0").ljust(6, "0")[:6])
    try:
        tz: tzinfo = assume_tz
        if offset is not None:
            sign = -1 if offset[0] == "-" else 1
            hours, minutes = int(offset[1:3]), int(offset[3:5])
            if hours > 14 or minutes > 59:
                raise ValueError("offset out of range")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date/time") from exc
    return as_utc(moment, assume_tz)


def parse_iso_datetime(text: str, assume_tz: tzinfo) -> datetime:
    """An ISO 8601 date or date-time (``2020-05-01``, ``2020-05-01T09:30:00+01:00``) in UTC."""
    t = text.strip()
    if not t:
        raise ValueError("empty date/time")
    try:
        if len(t) == 10:
            return date_as_utc(date.fromisoformat(t), assume_tz)
        return as_utc(datetime.fromisoformat(t), assume_tz)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a date/time (use ISO 8601, e.g. 2020-05-01T09:30:00Z)"
        ) from exc
