"""The patient's SMS thread (issue 14.5): messages, consent state, last reply, and a
coordinator's pause of reminders (holiday, admission) with a reason and an end date.

Viewing is audited like the patient page; the pause is a CSRF-checked form whose
change and audit row are one transaction (monitor.services.patient_contact.pause).
"""

from __future__ import annotations

from datetime import datetime, time

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import col, select

from monitor.services.patient_contact import ContactError, pause
from monitor.store.db import session_scope
from monitor.store.models import PatientContactRow, PatientMessageRow, PatientRow
from monitor.web import audit, scope
from monitor.web.auth import PageUser, host_of, settings_of
from monitor.web.csrf import CheckedForm
from monitor.web.queries import NotFound
from monitor.web.render import flash, renderer_of

router = APIRouter()

THREAD_LIMIT = 200


@router.get("/patients/{patient_id}/messages")
def messages_page(request: Request, principal: PageUser, patient_id: str) -> Response:
    host = host_of(request)
    now = host.clock.now()
    with session_scope(host.engine) as session:
        scope.check_patient(session, principal, patient_id)  # another team's: 404
        if session.get(PatientRow, patient_id) is None:
            raise NotFound(f"no patient {patient_id!r}")
        contact = session.get(PatientContactRow, patient_id)
        thread = list(
            session.exec(
                select(PatientMessageRow)
                .where(PatientMessageRow.patient_id == patient_id)
                .order_by(col(PatientMessageRow.id).desc())
                .limit(THREAD_LIMIT)
            )
        )
        last_reply = next((m for m in thread if m.direction == "in"), None)
        audit.record(session, principal.actor, "patient.messages_view", now, patient_id=patient_id)
        view = {
            "consent": contact.consent if contact else "none",
            "consent_by": contact.consent_by if contact else None,
            "consent_at": contact.consent_at if contact else None,
            "mobile_last4": contact.mobile[-4:] if contact else None,
            "language": contact.language if contact else None,
            "paused_until": contact.paused_until if contact else None,
            "pause_reason": contact.pause_reason if contact else None,
            "paused": bool(contact and contact.paused_until and contact.paused_until > now),
        }
        rows = [
            {"at": m.at, "direction": m.direction, "purpose": m.purpose, "text": m.text,
             "state": m.state}
            for m in thread
        ]  # fmt: skip
        last = {"at": last_reply.at, "text": last_reply.text} if last_reply else None
    return renderer_of(request).page(
        request, "patient_messages.html", principal, pid=patient_id, c=view, thread=rows,
        last_reply=last, has_contact=contact is not None,
    )  # fmt: skip


@router.post("/patients/{patient_id}/messages/pause")
def pause_reminders(
    request: Request, principal: PageUser, form: CheckedForm, patient_id: str
) -> Response:
    """Any signed-in role from coordinator up; an empty end date resumes now."""
    host, web = host_of(request), settings_of(request)
    now = host.clock.now()
    back = RedirectResponse(f"/patients/{patient_id}/messages", status_code=303)
    raw_until, reason = form.get("until"), form.get("reason")
    until: datetime | None = None
    if raw_until:
        try:
            day = datetime.fromisoformat(raw_until).date()
        except ValueError:
            flash(request, principal, "error", "Not paused: the end date must look like 2026-12-24")
            return back
        until = datetime.combine(day, time(23, 59), tzinfo=web.tz)
    try:
        with session_scope(host.engine) as session:
            scope.check_patient(session, principal, patient_id)  # another team's: 404
            pause(session, principal.actor, patient_id, until, reason[:200], now)
    except ContactError as exc:
        flash(request, principal, "error", f"Not changed: {exc}")
        return back
    flash(request, principal, "ok", "Reminders paused." if until else "Reminders resumed.")
    return back
