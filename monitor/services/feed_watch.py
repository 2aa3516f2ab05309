"""Silent feeds: a lab interface that stops sending is the commonest integration failure.

Each `[sources.<name>]` may say how often it is expected to deliver
(`expect_every_minutes`, plus `silence_grace_minutes`), and when it works
(`working_hours = "08:00-18:00"`, `working_days = ["mon", ...]`, in the source's
`timezone`): only time inside those hours counts as silence, so a lab that sends
nothing at night is not reported every morning. A message counts whatever became of
it (taken in or quarantined: a feed sending garbage is not silent).

A source silent past its period raises `system.source_silent` (warning) once per
silence: the alert's key is the source and the time it was last heard from, so the
next run, a restart or a second instance raise nothing new, and the next silence
(after a message came) is a new alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.store.models import InboundMessageRow, QuarantineRow

from .service_alert import ServiceAlert

RULE = "system.source_silent"
SOURCES = ("mllp", "csv", "fhir_poll")  # the `[sources.*]` tables that are feeds
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 62  # silence is counted over at most this many days back


@dataclass(frozen=True)
class FeedRule:
    """What `[sources.<name>]` expects of one feed."""

    name: str
    every: timedelta
    grace: timedelta
    tz: ZoneInfo
    hours: tuple[time, time] | None
    days: frozenset[int]  # weekday numbers, Monday 0

    @property
    def allowed(self) -> timedelta:
        return self.every + self.grace


@dataclass(frozen=True)
class FeedState:
    """One source as the health page shows it."""

    name: str
    enabled: bool
    last_seen: datetime | None
    expected_every_minutes: float | None
    silent_for: timedelta | None  # working time since the last message (or the start)
    silent: bool


def _clock(text: str) -> time:
    hour, minute = (int(x) for x in text.strip().split(":"))
    return time(hour, minute)


def feed_rules(raw: Mapping[str, Any]) -> dict[str, FeedRule]:
    """The feeds with an expected period, from the checked config's raw tables."""
    sources = raw.get("sources", {})
    rules: dict[str, FeedRule] = {}
    for name in SOURCES:
        table = sources.get(name) or {}
        if not table.get("enabled") or table.get("expect_every_minutes") is None:
            continue
        hours = table.get("working_hours")
        span: tuple[time, time] | None = None
        if hours:
            begin, end = str(hours).split("-")
            span = (_clock(begin), _clock(end))
        days = table.get("working_days") or list(DAYS)
        rules[name] = FeedRule(
            name=name,
            every=timedelta(minutes=float(table["expect_every_minutes"])),
            grace=timedelta(minutes=float(table.get("silence_grace_minutes", 15))),
            tz=ZoneInfo(str(table.get("timezone", "UTC"))),
            hours=span,
            days=frozenset(DAYS.index(d) for d in days),
        )
    return rules


def working_time(rule: FeedRule, start: datetime, end: datetime) -> timedelta:
    """How much of [start, end) lies inside the feed's working hours and days."""
    if end <= start:
        return timedelta(0)
    start = max(start, end - timedelta(days=MAX_DAYS))
    if rule.hours is None and len(rule.days) == 7:
        return end - start
    total = timedelta(0)
    day: date = start.astimezone(rule.tz).date() - timedelta(days=1)
    last = end.astimezone(rule.tz).date()
    while day <= last:
        if day.weekday() in rule.days:
            begin_t, end_t = rule.hours or (time(0), time(0))
            lo = datetime.combine(day, begin_t, rule.tz)
            hi = datetime.combine(day, end_t, rule.tz)
            if hi <= lo:  # "00:00-00:00" is the whole day; "22:00-06:00" runs past midnight
                hi += timedelta(days=1)
            overlap = min(hi, end) - max(lo, start)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def last_seen(session: Session) -> dict[str, datetime]:
    """The latest message of each source, taken in or quarantined (UTC)."""
    seen: dict[str, datetime] = {}
    for model in (InboundMessageRow, QuarantineRow):
        stmt = select(col(model.source), func.max(col(model.received_at))).group_by(
            col(model.source)
        )
        for source, at in session.exec(stmt):
            if at is None:
                continue
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            if source not in seen or at > seen[source]:
                seen[source] = at
    return seen


def feed_states(
    session: Session, raw: Mapping[str, Any], now: datetime, watching_since: datetime
) -> list[FeedState]:
    """Every configured feed (and any other source heard from), for the health page."""
    rules = feed_rules(raw)
    seen = last_seen(session)
    sources = raw.get("sources", {})
    names = [n for n in SOURCES if sources.get(n) is not None]
    names += sorted(n for n in seen if n not in names)
    out: list[FeedState] = []
    for name in names:
        rule = rules.get(name)
        at = seen.get(name)
        quiet = working_time(rule, at or watching_since, now) if rule else None
        out.append(
            FeedState(
                name=name,
                enabled=bool((sources.get(name) or {}).get("enabled", name not in SOURCES)),
                last_seen=at,
                expected_every_minutes=rule.every.total_seconds() / 60 if rule else None,
                silent_for=quiet,
                silent=bool(rule and quiet is not None and quiet > rule.allowed),
            )
        )
    return out


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def silent_feeds(
    session: Session, raw: Mapping[str, Any], now: datetime, watching_since: datetime
) -> list[ServiceAlert]:
    """A `system.source_silent` alert for each feed silent past its period."""
    rules = feed_rules(raw)
    found: list[ServiceAlert] = []
    for state in feed_states(session, raw, now, watching_since):
        rule = rules.get(state.name)
        if rule is None or not state.silent or state.silent_for is None:
            continue
        seen_key = state.last_seen.isoformat() if state.last_seen else "never"
        since = (
            f"last message {state.last_seen:%Y-%m-%d %H:%M} UTC"
            if state.last_seen
            else "no message since the monitor started watching"
        )
        hours = (
            f" within its working hours ({rule.hours[0]:%H:%M}-{rule.hours[1]:%H:%M} {rule.tz.key})"
            if rule.hours
            else ""
        )
        found.append(
            ServiceAlert(
                rule=RULE,
                severity="warning",
                key=f"silent:{state.name}:{seen_key}",
                message=(
                    f"Lab feed {state.name} has sent nothing for {_minutes(state.silent_for)}"
                    f"{hours} ({since}); it is expected every "
                    f"{_minutes(rule.every)}. Results may not be reaching the monitor: check "
                    "the interface engine and the lab link."
                ),
                details={
                    "source": state.name,
                    "last_seen": state.last_seen.isoformat() if state.last_seen else None,
                    "silent_minutes": round(state.silent_for.total_seconds() / 60, 1),
                    "expected_every_minutes": rule.every.total_seconds() / 60,
                    "grace_minutes": rule.grace.total_seconds() / 60,
                },
            )
        )
    return found
