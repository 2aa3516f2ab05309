"""`/metrics`: the service's state in the Prometheus text format (version 0.0.4).

Read from the database at each scrape, so every instance (and `monitor web`) reports
the same totals and nothing is lost on restart: messages by source and outcome,
quarantine size, unmapped codes, alerts by rule and by severity and state, delivery
attempts by channel and outcome, outbox depth and oldest pending age, each source's
last message; and from this process: sweep count, duration and last success,
heartbeat pings, scheduler runs, late runs and missed runs per job, and the
value-to-send latency histogram (`monitor.services.latency`).

The text is prometheus_client's own exposition: this module builds metric families
from the database at each scrape (a custom collector over one fresh registry), and
the process's histograms live in `monitor.services.latency`. Counts from the
database are gauges (a row count is not a process counter: it does not reset when
the process restarts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.services.latency import PROCESS
from monitor.store.models import (
    AlertRow,
    DeliveryAttemptRow,
    DeliveryRow,
    InboundMessageRow,
    QuarantineRow,
)

# The 0.0.4 text format, which generate_latest writes (and every Prometheus reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exposition(Collector):
    """The families of one scrape, handed to prometheus_client to write out."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, Any], float]],
    ) -> None:
        rows = list(samples)
        labels: Sequence[str] = list(rows[0][0]) if rows else []
        family: GaugeMetricFamily | CounterMetricFamily
        if kind == "counter":
            family = CounterMetricFamily(name, help_text, labels=labels)
        else:
            family = GaugeMetricFamily(name, help_text, labels=labels)
        for sample_labels, value in rows:
            family.add_metric([str(sample_labels[k]) for k in labels], float(value))
        self.families.append(family)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)

    def text(self) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return (generate_latest(registry) + generate_latest(PROCESS)).decode("utf-8")


def _grouped(session: Session, *columns: Any) -> list[tuple[Any, ...]]:
    stmt = sa_select(*columns, func.count()).group_by(*columns)
    return [tuple(row) for row in session.execute(stmt)]


def _ts(value: datetime | None) -> float:
    if value is None:
        return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def render(session: Session, now: datetime, host: Any = None) -> str:
    """The exposition text; `host` (the daemon's Service) adds the in-process figures."""
    from monitor.services.feed_watch import last_seen
    from monitor.services.jobs import STATS
    from monitor.web.queries import unmapped_codes

    out = Exposition()
    out.metric(
        "labmonitor_messages",
        "gauge",
        "Inbound lab messages stored, by source and outcome.",
        (
            ({"source": s, "outcome": o}, n)
            for s, o, n in _grouped(
                session, col(InboundMessageRow.source), col(InboundMessageRow.outcome)
            )
        ),
    )
    out.metric(
        "labmonitor_quarantine",
        "gauge",
        "Quarantine items by state.",
        (({"state": s}, n) for s, n in _grouped(session, col(QuarantineRow.state))),
    )
    out.metric(
        "labmonitor_unmapped_codes",
        "gauge",
        "Held values waiting on a code the mapping does not know, by sender and code.",
        (({"sender": s, "code": c}, n) for s, c, n in unmapped_codes(session)),
    )
    out.metric(
        "labmonitor_alerts",
        "gauge",
        "Alerts raised, by rule, severity and state.",
        (
            ({"rule": r, "severity": sev, "state": st}, n)
            for r, sev, st, n in _grouped(
                session, col(AlertRow.rule), col(AlertRow.severity), col(AlertRow.state)
            )
        ),
    )
    out.metric(
        "labmonitor_deliveries",
        "gauge",
        "Deliveries by state.",
        (({"state": s}, n) for s, n in _grouped(session, col(DeliveryRow.state))),
    )
    out.metric(
        "labmonitor_delivery_attempts",
        "gauge",
        "Delivery attempts by channel and outcome.",
        (
            ({"channel": c, "outcome": o or "in_flight"}, n)
            for c, o, n in _grouped(
                session, col(DeliveryAttemptRow.channel), col(DeliveryAttemptRow.outcome)
            )
        ),
    )
    depth, oldest = session.exec(
        select(func.count(), func.min(DeliveryRow.next_attempt_at)).where(
            col(DeliveryRow.state).in_(["pending", "sending"]),
            col(DeliveryRow.next_attempt_at) <= now,
        )
    ).one()
    out.metric("labmonitor_outbox_due", "gauge", "Deliveries due now, not yet sent.", [({}, depth)])
    age = (
        (now - (oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC))).total_seconds()
        if oldest
        else 0
    )
    out.metric(
        "labmonitor_outbox_oldest_due_seconds",
        "gauge",
        "How long the oldest due delivery has waited.",
        [({}, max(age, 0.0))],
    )
    out.metric(
        "labmonitor_source_last_message_timestamp_seconds",
        "gauge",
        "When each source last delivered a message (taken in or quarantined).",
        (({"source": s}, _ts(at)) for s, at in sorted(last_seen(session).items())),
    )
    watch = getattr(host, "watch", None)
    if watch is not None:
        out.metric("labmonitor_sweeps_total", "counter", "Sweeps finished.", [({}, watch.sweeps)])
        out.metric(
            "labmonitor_sweep_duration_seconds",
            "gauge",
            "How long the last finished sweep took.",
            [({}, watch.last_sweep_s or 0.0)],
        )
        out.metric(
            "labmonitor_sweep_last_success_timestamp_seconds",
            "gauge",
            "When the last sweep finished.",
            [({}, _ts(watch.last_sweep_ok))],
        )
        out.metric(
            "labmonitor_heartbeat_pings_total",
            "counter",
            "Dead man's switch pings, by result.",
            [({"result": "ok"}, watch.pings_sent), ({"result": "failed"}, watch.pings_failed)],
        )
        jobs = sorted(STATS.jobs.items())
        out.metric(
            "labmonitor_scheduler_runs_total",
            "counter",
            "Scheduler job runs.",
            (({"job": j}, c.runs) for j, c in jobs),
        )
        out.metric(
            "labmonitor_scheduler_late_runs_total",
            "counter",
            "Runs that started more than 1 s after their time.",
            (({"job": j}, c.late) for j, c in jobs),
        )
        out.metric(
            "labmonitor_scheduler_missed_runs_total",
            "counter",
            "Runs skipped or coalesced away.",
            (({"job": j}, c.missed) for j, c in jobs),
        )
    return out.text()
