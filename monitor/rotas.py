"""On-call rotas: who is on call at an instant, as a pure function of (rota, now).

A rota hands over daily or weekly at a local wall-clock time in its zone (so a
handover stays at 09:00 across a DST change). Shift n starts at `start` + n periods;
an instant belongs to the shift whose start is <= it and whose end is > it, so the
handover instant belongs to the incoming person and there is never a gap or overlap.
An override (leave cover) wins over the regular shift for [start, end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Override:
    member: str
    start: datetime  # aware
    end: datetime  # aware, exclusive

    def covers(self, now: datetime) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True)
class Rota:
    name: str
    label: str
    members: tuple[str, ...]
    handover: Literal["daily", "weekly"]
    handover_at: time
    start: date  # the local date the first member's first shift starts
    tz: ZoneInfo
    overrides: tuple[Override, ...] = ()

    @property
    def period_days(self) -> int:
        return 1 if self.handover == "daily" else 7


@dataclass(frozen=True)
class OnCall:
    """Who holds the rota now, until when, and who takes it over then."""

    rota: str
    member: str
    until: datetime
    next_member: str
    overridden: bool


def _shift_start(rota: Rota, n: int) -> datetime:
    """Start instant of regular shift n (a local wall-clock time in the rota's zone)."""
    day = rota.start + timedelta(days=n * rota.period_days)
    return datetime.combine(day, rota.handover_at, tzinfo=rota.tz)


def _shift_index(rota: Rota, now: datetime) -> int:
    local = now.astimezone(rota.tz)
    days = (local.date() - rota.start).days
    n = days // rota.period_days
    # The local date may sit before today's handover: step back until start <= now.
    while _shift_start(rota, n) > now:
        n -= 1
    while _shift_start(rota, n + 1) <= now:
        n += 1
    return n


def _regular(rota: Rota, now: datetime) -> tuple[str, datetime]:
    n = _shift_index(rota, now)
    return rota.members[n % len(rota.members)], _shift_start(rota, n + 1)


def member_at(rota: Rota, now: datetime) -> str:
    """Who is on call at `now`: the latest-starting covering override, else the shift."""
    covering = [o for o in rota.overrides if o.covers(now)]
    if covering:
        return max(covering, key=lambda o: o.start).member
    return _regular(rota, now)[0]


def _next_change(rota: Rota, now: datetime) -> datetime:
    """The first instant after `now` at which the answer of member_at may change."""
    candidates = [_regular(rota, now)[1]]
    for o in rota.overrides:
        if o.start > now:
            candidates.append(o.start)
        if o.covers(now):
            candidates.append(o.end)
    return min(candidates)


def on_call(rota: Rota, now: datetime) -> OnCall:
    """Who is on call now, until when, and who is next (a hand-over to the same person,
    e.g. an override for the one already on, is skipped)."""
    member = member_at(rota, now)
    until = _next_change(rota, now)
    nxt = member_at(rota, until)
    for _ in range(64):
        if nxt != member:
            break
        until = _next_change(rota, until)
        nxt = member_at(rota, until)
    overridden = any(o.covers(now) for o in rota.overrides)
    return OnCall(rota.name, member, until, nxt, overridden)
