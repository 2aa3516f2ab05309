"""Watching the watcher: the daemon's jobs that tell people when the monitor itself fails.

- **Dead man's switch**: after each successful deadline sweep, GET
  `[daemon] heartbeat_url` (Healthchecks, Uptime Kuma, Cronitor...). When sweeps stop
  (process dead, database gone, scheduler hung), the pings stop and that outside
  service pages someone.
- **Silent feeds** (`feed_watch`) every `[watch] feed_check_seconds`.
- **Delivery auditor** (`delivery_audit`) every `[watch] audit_seconds`.
- **Daily summary** to the coordinators at `[watch] summary_at` (quiet-hours zone).
- **systemd watchdog**, fed only while sweeps keep finishing (`readiness.sweep_problem`).

Each check is a method callable with a pinned clock (tests) and runs on one instance
at a time on PostgreSQL; the alerts they raise are idempotent by key besides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from apscheduler.schedulers.base import BaseScheduler

from monitor.services.daily_summary import daily_summary
from monitor.services.delivery_audit import delivery_gaps
from monitor.services.feed_watch import silent_feeds
from monitor.services.readiness import sweep_age_limit, sweep_problem
from monitor.services.service_alert import raise_service_alerts
from monitor.services.sweep import single_runner
from monitor.store.db import session_scope
from monitor.store.models import AlertRow

if TYPE_CHECKING:
    from monitor.daemon import Service

log = structlog.get_logger(__name__)


class WatchJobs:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.started = service.clock.now()
        self.pings_sent = 0
        self.pings_failed = 0
        self.watchdog_withheld = 0
        self.sweeps = 0
        self.last_sweep_s: float | None = None  # how long the last finished sweep took
        self.last_sweep_ok: datetime | None = None

    def sweep_finished(self, seconds: float) -> None:
        """A sweep ran to its end: count it, then ping the dead man's switch."""
        self.sweeps += 1
        self.last_sweep_s = seconds
        self.last_sweep_ok = self.service.clock.now()
        self.heartbeat_ping()

    def _raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = self.service.config.settings.raw
        return raw

    def _watch(self) -> dict[str, Any]:
        table = self._raw().get("watch", {})
        return table if isinstance(table, dict) else {}

    # --- the checks -------------------------------------------------------------------

    def heartbeat_ping(self) -> bool:
        """GET the dead man's switch; called after each successful sweep. Never raises."""
        daemon = self._raw().get("daemon", {})
        url = daemon.get("heartbeat_url")
        if not url:
            return False
        try:
            response = httpx.get(
                str(url), timeout=float(daemon.get("heartbeat_timeout_s", 5)), follow_redirects=True
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.pings_failed += 1
            log.warning("heartbeat.ping_failed", error=str(exc) or type(exc).__name__)
            return False
        self.pings_sent += 1
        return True

    def check_feeds(self) -> list[AlertRow]:
        return self._raise("feed_watch", self._feeds)

    def _feeds(self, now: datetime) -> Any:
        with session_scope(self.service.engine) as session:
            found = silent_feeds(session, self._raw(), now, self.started)
            return raise_service_alerts(session, found, self.service.config.routing, now, "feed")

    def audit_deliveries(self) -> list[AlertRow]:
        return self._raise("delivery_audit", self._audit)

    def _audit(self, now: datetime) -> Any:
        gap = timedelta(minutes=float(self._watch().get("delivery_gap_minutes", 15)))
        with session_scope(self.service.engine) as session:
            found = delivery_gaps(session, now, gap)
            return raise_service_alerts(session, found, self.service.config.routing, now, "gap")

    def summary(self) -> list[AlertRow]:
        return self._raise("daily_summary", self._summary)

    def _summary(self, now: datetime) -> Any:
        routing = self.service.config.routing
        zone = routing.quiet_hours.tz if routing.quiet_hours else UTC
        day = now.astimezone(zone).date().isoformat()
        with session_scope(self.service.engine) as session:
            found = daily_summary(
                session, self.service.config.protocols, self._raw(), now, day, self.started
            )
            return raise_service_alerts(session, [found], routing, now, "sum")

    def _raise(self, name: str, job: Any) -> list[AlertRow]:
        with single_runner(self.service.engine, name) as mine:
            if not mine:
                return []
            rows: list[AlertRow] = job(self.service.clock.now())
        if rows:
            self.service.wake_dispatcher()
        return rows

    def watchdog(self) -> bool:
        """Feed the systemd watchdog only while sweeps keep finishing."""
        now = self.service.clock.now()
        why = sweep_problem(
            self.service.last_sweep, self.started, now, sweep_age_limit(self._raw())
        )
        if why:
            self.watchdog_withheld += 1
            log.error("watchdog.withheld", reason=why)
            return False
        return self.service.sd.watchdog()

    # --- scheduling ---------------------------------------------------------------------

    def schedule(self, sched: BaseScheduler, now: datetime) -> None:
        """Add the watch jobs (the daemon's start_scheduler calls this)."""
        watch = self._watch()
        every = float(watch.get("feed_check_seconds", 60))
        sched.add_job(
            self.check_feeds,
            "interval",
            seconds=every,
            id="feed_watch",
            next_run_time=now + timedelta(seconds=every),
            max_instances=1,
            coalesce=True,
        )
        every = float(watch.get("audit_seconds", 300))
        sched.add_job(
            self.audit_deliveries,
            "interval",
            seconds=every,
            id="delivery_audit",
            next_run_time=now + timedelta(seconds=every),
            max_instances=1,
            coalesce=True,
        )
        if watch.get("daily_summary", True):
            hour, minute = (int(x) for x in str(watch.get("summary_at", "07:30")).split(":"))
            routing = self.service.config.routing
            sched.add_job(
                self.summary,
                "cron",
                hour=hour,
                minute=minute,
                timezone=routing.quiet_hours.tz if routing.quiet_hours else UTC,
                id="daily_summary",
                coalesce=True,
            )
