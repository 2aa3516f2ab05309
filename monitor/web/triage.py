"""The triage desk's reading of the store: what needs action first, counts, and how long
acknowledging takes.

Order: unacknowledged critical, then unacknowledged warnings, then the rest (open
info, then acknowledged, newest first). Within the unacknowledged bands the alert
that has waited longest comes first, because that is the one most likely missed.
Resolved alerts are not on the desk; the alert log has them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.store.models import AlertRow
from monitor.web.queries import SEVERITIES, STATES
from monitor.web.search import team_clause

DESK_STATES = ("open", "acknowledged")
DESK_LIMIT = 500


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands UTC columns back naive."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DeskRow:
    """One alert on the desk with the durations a coordinator acts on."""

    code: str
    patient: str | None
    rule: str
    severity: str
    state: str
    message: str
    raised_at: datetime
    acknowledged_by: str | None
    age: timedelta
    unacknowledged_for: timedelta | None
    time_to_acknowledge: timedelta | None

    @property
    def band(self) -> int:
        return desk_band(self.state, self.severity)


def desk_band(state: str, severity: str) -> int:
    """0 unacknowledged critical, 1 unacknowledged warning, 2 open info, 3 acknowledged."""
    if state == "open":
        return {"critical": 0, "warning": 1}.get(severity, 2)
    return 3


def desk_row(a: AlertRow, now: datetime) -> DeskRow:
    raised = _aware(a.raised_at) or now
    acked = _aware(a.acknowledged_at)
    return DeskRow(
        code=a.code,
        patient=a.patient_id,
        rule=a.rule,
        severity=a.severity,
        state=a.state,
        message=a.message,
        raised_at=raised,
        acknowledged_by=a.acknowledged_by,
        age=now - raised,
        unacknowledged_for=now - raised if a.state == "open" else None,
        time_to_acknowledge=acked - raised if acked else None,
    )


def desk_order(rows: Sequence[DeskRow]) -> list[DeskRow]:
    """Unacknowledged bands oldest first; acknowledged newest first."""

    def key(r: DeskRow) -> tuple[int, float, str]:
        stamp = r.raised_at.timestamp()
        return r.band, stamp if r.band < 3 else -stamp, r.code

    return sorted(rows, key=key)


@dataclass(frozen=True)
class Desk:
    rows: list[DeskRow]
    counts: dict[str, dict[str, int]]  # severity -> state -> n (every state, for the header)
    truncated: bool


def desk(
    session: Session, now: datetime, teams: frozenset[str] | None = None, limit: int = DESK_LIMIT
) -> Desk:
    """The triage desk: open and acknowledged alerts in action order, with counts."""
    where = [col(AlertRow.state).in_(DESK_STATES), *team_clause(teams, AlertRow.patient_id)]
    rows = session.exec(select(AlertRow).where(*where)).all()
    ordered = desk_order([desk_row(a, now) for a in rows])
    counts = {s: dict.fromkeys(STATES, 0) for s in SEVERITIES}
    for severity, state, n in session.exec(
        select(AlertRow.severity, AlertRow.state, func.count())
        .where(*team_clause(teams, AlertRow.patient_id))
        .group_by(col(AlertRow.severity), col(AlertRow.state))
    ):
        counts.setdefault(severity, dict.fromkeys(STATES, 0))[state] = int(n)
    return Desk(ordered[:limit], counts, len(ordered) > limit)


@dataclass(frozen=True)
class AckStats:
    acknowledged: int
    median: timedelta | None


def ack_stats(
    session: Session,
    since: datetime | None = None,
    teams: frozenset[str] | None = None,
    team: str | None = None,
) -> AckStats:
    """The median time from raised to acknowledged over acknowledged alerts (resolved ones
    that were acknowledged first count too). `teams` limits to what an account may see;
    `team` counts only the alerts routed for that care team (frozen at raise)."""
    where: list[Any] = [
        col(AlertRow.acknowledged_at).is_not(None),
        *team_clause(teams, AlertRow.patient_id),
    ]
    if team is not None:
        where.append(col(AlertRow.care_team) == team)
    if since is not None:
        where.append(col(AlertRow.raised_at) >= since)
    pairs = session.exec(select(AlertRow.raised_at, AlertRow.acknowledged_at).where(*where)).all()
    waits = [
        (ack - raised).total_seconds()
        for raised, ack in ((_aware(r), _aware(a)) for r, a in pairs)
        if raised is not None and ack is not None
    ]
    median = timedelta(seconds=statistics.median(waits)) if waits else None
    return AckStats(len(waits), median)


def span(value: timedelta | None) -> str:
    """A duration as a person says it: "3 d 4 h", "2 h 5 min", "40 s"."""
    if value is None:
        return "-"
    seconds = max(0, int(value.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"
