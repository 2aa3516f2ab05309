"""The coordinators' daily summary: is the monitor doing its job, in one message.

Alerts raised and acknowledged in the last 24 hours, the median time to
acknowledge, the critical alerts still open, the patients whose liver tests are
overdue, what waits in quarantine, and the feeds that are silent. One `info` alert
(`system.daily_summary`) keyed by the day, so a restart or a second instance never
sends a day's summary twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.store.models import AlertRow, QuarantineRow

from .service_alert import ServiceAlert

RULE = "system.daily_summary"


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def daily_summary(
    session: Session,
    protocols: Mapping[str, Protocol],
    raw: Mapping[str, Any],
    now: datetime,
    day: str,
    watching_since: datetime,
) -> ServiceAlert:
    from monitor.services.feed_watch import feed_states
    from monitor.web.queries import patient_summaries

    since = now - timedelta(hours=24)
    raised = list(
        session.exec(
            select(AlertRow).where(col(AlertRow.raised_at) >= since, col(AlertRow.rule) != RULE)
        )
    )
    acked = [a for a in raised if a.acknowledged_at is not None]
    waits = [(a.acknowledged_at - a.raised_at).total_seconds() for a in acked if a.acknowledged_at]
    open_critical = int(
        session.exec(
            select(func.count())
            .select_from(AlertRow)
            .where(AlertRow.state == "open", AlertRow.severity == "critical")
        ).one()
    )
    overdue = [p.id for p in patient_summaries(session, protocols, now) if p.overdue]
    waiting = int(
        session.exec(
            select(func.count()).select_from(QuarantineRow).where(QuarantineRow.state == "waiting")
        ).one()
    )
    silent = [f.name for f in feed_states(session, raw, now, watching_since) if f.silent]
    by_severity = {s: sum(1 for a in raised if a.severity == s) for s in ("critical", "warning")}
    lines = [
        f"Last 24 h: {len(raised)} alert(s) raised ({by_severity['critical']} critical, "
        f"{by_severity['warning']} warning), {len(acked)} acknowledged"
        + (f", median time to acknowledge {_minutes(median(waits))}" if waits else "")
        + ".",
        f"Open critical alerts: {open_critical}.",
        f"Patients with overdue liver tests: {len(overdue)}"
        + (f" ({', '.join(overdue[:10])}{', ...' if len(overdue) > 10 else ''})" if overdue else "")
        + ".",
        f"Quarantine: {waiting} waiting.",
        "Silent lab feeds: " + (", ".join(silent) if silent else "none") + ".",
    ]
    return ServiceAlert(
        rule=RULE,
        severity="info",
        key=f"summary:{day}",
        message="Daily summary. " + " ".join(lines),
        details={
            "raised": len(raised),
            "acknowledged": len(acked),
            "median_ack_seconds": median(waits) if waits else None,
            "open_critical": open_critical,
            "overdue_patients": overdue,
            "quarantine_waiting": waiting,
            "silent_feeds": silent,
        },
    )
