"""Operations: the quarantine (what waits, why; retry and discard) and the health page.

Retrying a quarantined message is the ingestion service's job: the console calls
`monitor.services.quarantine.retry_quarantined` (and `discard`) when that module
provides them, and hides the retry button otherwise. Discarding needs a reason and
a clinician or admin, since a discarded lab result is never evaluated. The raw
message is not shown: it may carry the patient's name, which the console shows
only on the patient page.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from monitor.store.db import session_scope
from monitor.store.models import QuarantineRow
from monitor.teams import oncall_rows
from monitor.web import audit, queries, scope
from monitor.web.auth import PageUser, Principal, host_of, need
from monitor.web.csrf import CheckedForm
from monitor.web.queries import NotFound
from monitor.web.render import flash, renderer_of

log = structlog.get_logger(__name__)

router = APIRouter()

ClinicianUser = Annotated[Principal, Depends(need("clinician"))]


def _service(name: str) -> Callable[..., Any] | None:
    """A function of the quarantine service, if that module (being written) has it."""
    try:
        module = importlib.import_module("monitor.services.quarantine")
    except ImportError:
        return None
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def _call(fn: Callable[..., Any], session: Session, row_id: int, **offered: Any) -> Any:
    """Call `fn(session, row_id, ...)` with those of `offered` its signature takes."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(session, row_id, **offered)
    return fn(session, row_id, **{k: v for k, v in offered.items() if k in params})


def retry_available() -> bool:
    return _service("retry_quarantined") is not None


@router.get("/quarantine")
def quarantine(request: Request, principal: PageUser) -> Response:
    host = host_of(request)
    with session_scope(host.engine) as session:
        rows = queries.waiting_quarantine(session)
        unmapped = queries.unmapped_codes(session)
    return renderer_of(request).page(
        request,
        "quarantine.html",
        principal,
        rows=rows,
        unmapped=unmapped,
        can_retry=retry_available(),
    )


def _waiting(session: Session, row_id: int) -> QuarantineRow:
    row = session.get(QuarantineRow, row_id)
    if row is None:
        raise NotFound(f"no quarantined message {row_id}")
    return row


@router.post("/quarantine/{row_id}/retry")
def quarantine_retry(
    request: Request, principal: PageUser, form: CheckedForm, row_id: int
) -> Response:
    host = host_of(request)
    now = host.clock.now()
    fn = _service("retry_quarantined")
    if fn is None:
        flash(request, principal, "error", "Retry is not available in this version.")
        return RedirectResponse("/quarantine", status_code=303)
    try:
        with session_scope(host.engine) as session:
            _waiting(session, row_id)
            result = _call(
                fn,
                session,
                row_id,
                by=principal.username,
                now=now,
                protocols=host.config.protocols,
                routing=host.config.routing,
                mapping=getattr(host, "mapping", None),
            )
            row = _waiting(session, row_id)
            audit.record(
                session, principal.actor, "quarantine.retry", now, row=row_id, state=row.state
            )
            state = row.state
    except NotFound:
        raise
    except Exception as exc:  # the service's own refusal, shown to the person who asked
        log.warning("quarantine.retry_failed", row=row_id, error=type(exc).__name__)
        flash(request, principal, "error", f"Retry of #{row_id} failed: {exc}")
        return RedirectResponse("/quarantine", status_code=303)
    host.wake_dispatcher()
    taken, why = result if isinstance(result, tuple) and len(result) == 2 else (True, "")
    flash(
        request,
        principal,
        "ok" if taken else "error",
        f"#{row_id} {'taken in' if taken else 'still cannot be used'} ({state}): {why}",
    )
    return RedirectResponse("/quarantine", status_code=303)


@router.post("/quarantine/{row_id}/discard")
def quarantine_discard(
    request: Request, principal: ClinicianUser, form: CheckedForm, row_id: int
) -> Response:
    host = host_of(request)
    now = host.clock.now()
    reason = form.get("reason")[:500]
    if not reason:
        flash(request, principal, "error", "Say why the message is discarded.")
        return RedirectResponse("/quarantine", status_code=303)
    with session_scope(host.engine) as session:
        row = _waiting(session, row_id)
        if row.state != "waiting":
            flash(request, principal, "error", f"#{row_id} is already {row.state}.")
            return RedirectResponse("/quarantine", status_code=303)
        fn = _service("discard")
        if fn is not None:
            _call(fn, session, row_id, by=principal.username, reason=reason, now=now)
        else:
            row.state = "discarded"
            row.resolved_by = principal.username
            row.resolved_at = now
            row.resolution = reason
            session.add(row)
        audit.record(session, principal.actor, "quarantine.discard", now, row=row_id, reason=reason)
    log.info("quarantine.discarded", row=row_id)
    flash(request, principal, "ok", f"Discarded #{row_id}.")
    return RedirectResponse("/quarantine", status_code=303)


def health_now(request: Request) -> tuple[Any, list[Any], datetime]:
    host = host_of(request)
    with session_scope(host.engine) as session:
        data = queries.health(session, host.scheduler, host.last_sweep, host.config.protocols)
        failed = queries.failed_deliveries(session)
    return data, failed, host.clock.now()


def watch_now(request: Request, now: datetime) -> dict[str, Any]:
    """The feeds, the scheduler's late and missed runs, and readiness, for the health page."""
    from monitor.services.feed_watch import feed_states
    from monitor.services.jobs import STATS
    from monitor.services.readiness import not_ready

    host = host_of(request)
    watch = getattr(host, "watch", None)  # the daemon's; `monitor web` has none
    started = getattr(watch, "started", None) or now
    raw = host.config.settings.raw
    with session_scope(host.engine) as session:
        feeds = feed_states(session, raw, now, started)
    reasons = not_ready(
        host.engine,
        raw,
        now,
        scheduler=host.scheduler,
        scheduler_here=watch is not None,
        last_sweep=host.last_sweep,
        started=started,
    )
    jobs = sorted(STATS.jobs.items()) if watch is not None else []
    return {"feeds": feeds, "jobs": jobs, "not_ready": reasons, "watch": watch}


@router.get("/health")
def health(request: Request, principal: PageUser) -> Response:
    from monitor.web.triage import ack_stats

    data, failed, now = health_now(request)
    host = host_of(request)
    with session_scope(host.engine) as session:
        seen = scope.teams_of(session, principal)
        ack = ack_stats(session, teams=seen)
        ack_teams = [
            (t.label, ack_stats(session, team=t.name))
            for t in host.config.routing.teams.values()
            if seen is None or t.name in seen
        ]
    return renderer_of(request).page(
        request,
        "health.html",
        principal,
        h=data,
        failed=failed,
        now=now,
        oncall=oncall_rows(host_of(request).config.routing, now),
        ack=ack,
        ack_teams=ack_teams,
        **watch_now(request, now),
    )
