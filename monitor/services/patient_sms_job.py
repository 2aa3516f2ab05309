"""The daemon's patient-SMS pass (issue 14), beside the deadline sweep.

Every `[daemon] sweep_seconds`, when `[patient_sms] enabled`: write the due
messages (one transaction), then send the pending ones on the configured
twilio_sms channel. One instance at a time (the same advisory lock as the sweep's,
under its own name). The daemon's only edit is the one call to `schedule`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from monitor.services.patient_sms import send_pending, sweep, table_of
from monitor.services.sweep import single_runner
from monitor.store.db import session_scope

log = structlog.get_logger(__name__)


async def run_pass(service: Any) -> int:
    """One pass; returns the sends tried (0 when disabled or another instance runs it)."""
    settings = service.config.settings
    t = table_of(settings.raw)
    if not t.enabled:
        return 0
    sender = service.config.notifiers.get(t.channel)
    if sender is None or not hasattr(sender, "send_text"):
        log.error("patient_sms.no_channel", channel=t.channel)
        return 0
    now: datetime = service.clock.now()
    with single_runner(service.engine, "patient_sms") as mine:
        if not mine:
            return 0
        with session_scope(service.engine) as session:
            sweep(
                session, now, t, service.config.protocols, settings.path.parent,
                service.config.routing,
            )  # fmt: skip
        tried = await send_pending(service.engine, sender, now)
    service.wake_dispatcher()  # alerts it raised (non-attendance) go out at once
    return tried


def schedule(sched: Any, service: Any, seconds: float, first: datetime) -> None:
    """Add the pass to the daemon's scheduler (a no-op pass while disabled)."""
    if not table_of(service.config.settings.raw).enabled:
        return

    async def job() -> None:
        await run_pass(service)

    sched.add_job(
        job, "interval", seconds=seconds, id="patient_sms", next_run_time=first,
        max_instances=1, coalesce=True,
    )  # fmt: skip
