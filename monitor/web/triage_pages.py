"""The console's front page: the triage desk, its refreshed fragment, and bulk actions.

The desk refreshes itself by polling `/triage/rows` (static/triage.js, allowed by the
CSP's script-src 'self'); without JavaScript it is a plain page with a Refresh link.
Bulk acknowledge and silence are one form with one reason, one transaction, and one
audit row per selected alert, so the audit log reads the same as single actions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from monitor.services.alerts import AlertError, acknowledge, add_note, silence
from monitor.store.db import session_scope
from monitor.web import audit, queries, scope, triage
from monitor.web.auth import PageUser, Principal, host_of, settings_of
from monitor.web.csrf import CheckedForm
from monitor.web.render import flash, renderer_of

router = APIRouter()

REASON_MAX = 500
MAX_SELECTED = 200
SILENCE_HOURS = (1, 4, 12, 24, 72)


def _desk_context(request: Request, principal: Principal) -> dict[str, Any]:
    host = host_of(request)
    now = host.clock.now()
    with session_scope(host.engine) as session:
        d = triage.desk(session, now, teams=scope.teams_of(session, principal))
    return {
        "desk": d,
        "now": now,
        "severities": queries.SEVERITIES,
        "states": queries.STATES,
    }


@router.get("/")
def triage_page(request: Request, principal: PageUser, every: int = 30) -> Response:
    """`every`: seconds between refreshes (2 to 300)."""
    web = settings_of(request)
    return renderer_of(request).page(
        request,
        "triage.html",
        principal,
        silence_hours=SILENCE_HOURS,
        idle_minutes=web.session_idle_minutes,
        every=min(max(every, 2), 300),
        **_desk_context(request, principal),
    )


@router.get("/triage/rows")
def triage_rows(request: Request, principal: PageUser) -> Response:
    """The counts and rows alone, for the page's refresh (no layout, no flashes)."""
    return renderer_of(request).fragment("_triage_desk.html", **_desk_context(request, principal))


def _bulk(
    request: Request, principal: Principal, codes: list[str], action: str, reason: str, hours: int
) -> tuple[str, str]:
    """Do `action` to every selected alert; (flash kind, text)."""
    host = host_of(request)
    now = host.clock.now()
    done: list[str] = []
    skipped: list[str] = []
    with session_scope(host.engine) as session:
        silenced: set[str] = set()
        for code in codes:
            try:
                scope.check_alert(session, principal, code)  # another team's: as if absent
                alert = queries.alert_row(session, code)
            except queries.NotFound:
                skipped.append(code)
                continue
            detail: dict[str, object] = {"reason": reason, "bulk": len(codes)}
            if action == "acknowledge":
                changed = acknowledge(session, alert.code, principal.username, now, via="web")
                add_note(session, alert.code, principal.username, f"acknowledged: {reason}", now)
                detail["changed"] = len(changed)
            else:
                if alert.patient_id is None:
                    skipped.append(alert.code)  # a service alert has no patient to silence
                    continue
                until = now + timedelta(hours=hours)
                if alert.patient_id not in silenced:
                    silence(session, alert.patient_id, reason, until, principal.username, now)
                    silenced.add(alert.patient_id)
                detail["until"] = until.isoformat()
            audit.record(
                session,
                principal.actor,
                f"alert.{action}",
                now,
                patient_id=alert.patient_id,
                alert_code=alert.code,
                **detail,
            )
            done.append(alert.code)
    verb = "Acknowledged" if action == "acknowledge" else f"Silenced for {hours} h the patients of"
    text = f"{verb} {len(done)} alert(s)" + (f": {', '.join(done)}." if done else ".")
    if skipped:
        text += f" Skipped {', '.join(skipped)}."
    return ("ok" if done else "error"), text


@router.post("/triage/act")
def triage_act(request: Request, principal: PageUser, form: CheckedForm) -> Response:
    back = RedirectResponse("/", status_code=303)
    codes = list(dict.fromkeys(c.upper() for c in form.getlist("code") if c))[:MAX_SELECTED]
    action = form.get("action")
    reason = form.get("reason")[:REASON_MAX]
    hours_raw = form.get("hours", "4")
    hours = int(hours_raw) if hours_raw.isdigit() and int(hours_raw) in SILENCE_HOURS else 0
    problem = (
        "Select at least one alert."
        if not codes
        else "Choose acknowledge or silence."
        if action not in ("acknowledge", "silence")
        else "Write a reason first."
        if not reason
        else "Choose how long to silence."
        if action == "silence" and not hours
        else ""
    )
    if problem:
        flash(request, principal, "error", f"Nothing done: {problem}")
        return back
    try:
        kind, text = _bulk(request, principal, codes, action, reason, hours)
    except AlertError as exc:  # the whole batch is one transaction: nothing was written
        kind, text = "error", f"Nothing done: {exc}"
    flash(request, principal, kind, text)
    return back
