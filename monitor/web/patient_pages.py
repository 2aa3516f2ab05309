"""Patients by need, the patient page (chart, events, alerts), and a clinician's forms.

Dose changes, stops and symptom reports go through `intake.record_event` like
every other source (source "web", recorded by the signed-in user), in one
transaction with the evaluation they cause and their audit row; then the
dispatcher is woken so any alert goes out at once. Only clinicians and admins
may record them. The patient page is the one place a display name is shown.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from monitor.schemas import DoseIn, StopIn, SymptomsIn, describe, utc
from monitor.services.evaluate import UnknownPatient
from monitor.services.intake import IntakeError, record_event, set_care_team
from monitor.store.db import session_scope
from monitor.store.models import PatientRow
from monitor.web import audit, queries, scope
from monitor.web.auth import PageUser, Principal, host_of, need, settings_of
from monitor.web.csrf import CheckedForm, Form
from monitor.web.queries import NotFound
from monitor.web.render import flash, renderer_of

log = structlog.get_logger(__name__)

router = APIRouter()

SYMPTOMS = ("fatigue", "nausea", "vomiting", "ruq_pain", "jaundice")
ClinicianUser = Annotated[Principal, Depends(need("clinician"))]


@router.get("/patients")
def patients(
    request: Request, principal: PageUser, q: str = "", page: int = 1, team: str = ""
) -> Response:
    """Patients by need, `q` an id prefix or identifier (any case), `team` one care
    team (within the account's), a page at a time."""
    host, web = host_of(request), settings_of(request)
    now = host.clock.now()
    q, team = q.strip()[:64], team.strip()[:64]
    with session_scope(host.engine) as session:
        teams = scope.teams_of(session, principal)
        if team:
            teams = frozenset({team}) & teams if teams is not None else frozenset({team})
        rows = queries.patient_summaries(session, host.config.protocols, now, search=q, teams=teams)
        audit.record(
            session, principal.actor, "patients.list", now, count=len(rows), search=q or None
        )
    pages = max(1, math.ceil(len(rows) / web.page_size))
    page = min(max(page, 1), pages)
    shown = rows[(page - 1) * web.page_size : page * web.page_size]
    return renderer_of(request).page(
        request,
        "patients.html",
        principal,
        patients=shown,
        total=len(rows),
        page=page,
        pages=pages,
        q=q,
        team=team,
        teams={t.name: t.label for t in host.config.routing.teams.values()},
        page_link=lambda n: urlencode(
            {**({"q": q} if q else {}), **({"team": team} if team else {}), "page": n}
        ),
        now=now,
    )


@router.get("/patients/{patient_id}")
def patient_page(request: Request, principal: PageUser, patient_id: str) -> Response:
    host, web = host_of(request), settings_of(request)
    now = host.clock.now()
    with session_scope(host.engine) as session:
        scope.check_patient(session, principal, patient_id)
        view = queries.patient_detail(session, patient_id, host.config.protocols, now, web.tz)
        audit.record(session, principal.actor, "patient.view", now, patient_id=patient_id)
        row = session.get(PatientRow, patient_id)
        care_team = row.care_team if row is not None else None
    return renderer_of(request).page(
        request,
        "patient.html",
        principal,
        p=view.out,
        chart=view.chart,
        display_name=view.display_name,
        symptoms=SYMPTOMS,
        now_local=now.astimezone(web.tz).strftime("%Y-%m-%dT%H:%M"),
        care_team=care_team,
        teams={t.name: t.label for t in host.config.routing.teams.values()},
        now=now,
        overdue_days=overdue_days(view.out.next_due, now),
    )


def overdue_days(next_due: datetime | None, now: datetime) -> int:
    """Whole days past the due date, at least 1 once it has passed (0: not yet due)."""
    if next_due is None or now <= next_due:
        return 0
    return max(1, (now - next_due).days)


def _at(form: Form, request: Request) -> str:
    """`datetime-local` input, read in the console's time zone; empty means now."""
    host, web = host_of(request), settings_of(request)
    raw = form.get("at")
    if not raw:
        return host.clock.now().isoformat()
    try:
        local = datetime.fromisoformat(raw)
    except ValueError:
        return raw  # refused by the model with the field named
    return (local if local.tzinfo else local.replace(tzinfo=web.tz)).isoformat()


def _record(
    request: Request,
    principal: Principal,
    patient_id: str,
    model: type[DoseIn | StopIn | SymptomsIn],
    data: dict[str, Any],
    note: str,
) -> Response:
    host = host_of(request)
    now = host.clock.now()
    back = RedirectResponse(f"/patients/{patient_id}", status_code=303)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        flash(request, principal, "error", f"Not recorded: {describe(exc)}")
        return back
    payload = parsed.payload()
    if note:
        payload["note"] = note[:2000]
    try:
        with session_scope(host.engine) as session:
            scope.check_patient(session, principal, patient_id)
            event, alerts = record_event(
                session,
                patient_id,
                parsed.kind,
                utc(parsed.at),
                payload,
                now,
                host.config.protocols,
                source="web",
                recorded_by=principal.username,
                routing=host.config.routing,
            )
            audit.record(
                session,
                principal.actor,
                f"{parsed.kind}.record",
                now,
                patient_id=patient_id,
                event_id=event.id,
                at=utc(parsed.at).isoformat(),
                alerts=[a.code for a in alerts] or None,
            )
            raised = [(a.code, a.severity, a.rule) for a in alerts]
    except UnknownPatient as exc:
        raise NotFound(f"no patient {patient_id!r}") from exc
    except IntakeError as exc:
        flash(request, principal, "error", f"Not recorded: {exc}")
        return back
    host.wake_dispatcher()
    text = f"Recorded {parsed.kind} event {event.id}."
    if raised:
        text += " New alerts: " + ", ".join(f"{c} ({s} {r})" for c, s, r in raised) + "."
    flash(request, principal, "ok", text)
    return back


@router.post("/patients/{patient_id}/dose")
def record_dose(
    request: Request, principal: ClinicianUser, form: CheckedForm, patient_id: str
) -> Response:
    data = {"kind": "dose", "at": _at(form, request), "dose_mg": _number(form.get("dose_mg"))}
    return _record(request, principal, patient_id, DoseIn, data, form.get("note"))


@router.post("/patients/{patient_id}/stop")
def record_stop(
    request: Request, principal: ClinicianUser, form: CheckedForm, patient_id: str
) -> Response:
    reason = form.get("reason")
    if not reason:
        flash(request, principal, "error", "Not recorded: reason: say why therapy is stopped")
        return RedirectResponse(f"/patients/{patient_id}", status_code=303)
    data = {"kind": "stop", "at": _at(form, request), "reason": reason[:500]}
    return _record(request, principal, patient_id, StopIn, data, form.get("note"))


@router.post("/patients/{patient_id}/symptoms")
def record_symptoms(
    request: Request, principal: ClinicianUser, form: CheckedForm, patient_id: str
) -> Response:
    names = form.getlist("symptom")
    data = {"kind": "symptoms", "at": _at(form, request), "symptoms": names}
    return _record(request, principal, patient_id, SymptomsIn, data, form.get("note"))


@router.post("/patients/{patient_id}/team")
def change_team(
    request: Request, principal: ClinicianUser, form: CheckedForm, patient_id: str
) -> Response:
    """A clinician moves the patient to another care team; audited with the old one."""
    host = host_of(request)
    now = host.clock.now()
    team = form.get("team") or None
    try:
        with session_scope(host.engine) as session:
            scope.check_patient(session, principal, patient_id)
            before = set_care_team(session, patient_id, team, host.config.routing)
            audit.record(
                session,
                principal.actor,
                "patient.care_team",
                now,
                patient_id=patient_id,
                team=team,
                before=before,
            )
    except IntakeError as exc:
        if "no patient" in str(exc):
            raise NotFound(f"no patient {patient_id!r}") from exc
        flash(request, principal, "error", f"Not changed: {exc}")
    else:
        flash(request, principal, "ok", f"Care team: {before or 'none'} -> {team or 'none'}.")
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


def _number(raw: str) -> float | str:
    try:
        return float(raw)
    except ValueError:
        return raw  # the model names the field and refuses it
