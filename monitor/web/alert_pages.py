"""The alert log (filters, paging, counts, CSV) and the alert page with its actions.

Every role may acknowledge, resolve and annotate. Each action and its audit row
are one transaction; viewing an alert is audited as a view of its patient.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from monitor.services.alerts import AlertError, acknowledge, add_note, resolve
from monitor.store.db import session_scope
from monitor.store.models import PatientRow
from monitor.web import audit, queries, scope
from monitor.web.auth import PageUser, Principal, host_of, settings_of
from monitor.web.csrf import CheckedForm
from monitor.web.queries import AlertFilter, FilterError
from monitor.web.render import NO_STORE, flash, renderer_of
from monitor.web.schemas import AlertOut

router = APIRouter()

Q = Annotated[str | None, Query()]
NOTE_MAX = 2000
CSV_COLUMNS = (
    "code",
    "raised_at",
    "at",
    "patient",
    "rule",
    "severity",
    "state",
    "message",
    "acknowledged_by",
    "acknowledged_at",
    "resolved_at",
    "profile",
)


def _filter(
    patient: str | None,
    rule: str | None,
    severity: str | None,
    state: str | None,
    date_from: str | None,
    date_to: str | None,
    q: str | None = None,
    team: str | None = None,
) -> tuple[AlertFilter, str | None]:
    try:
        f = AlertFilter.parse(patient, rule, severity, state, date_from, date_to, q, team)
        return f, None
    except FilterError as exc:
        return AlertFilter(), str(exc)


@router.get("/alerts")
def alert_log(
    request: Request,
    principal: PageUser,
    patient: Q = None,
    rule: Q = None,
    severity: Q = None,
    state: Q = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    page: int = 1,
    q: Q = None,
    team: Q = None,
) -> Response:
    f, error = _filter(patient, rule, severity, state, date_from, date_to, q, team)
    host, web = host_of(request), settings_of(request)
    with session_scope(host.engine) as session:
        teams = scope.teams_of(session, principal)
        result = queries.list_alerts(session, f, web.tz, page, web.page_size, teams)
        rules = queries.known_rules(session)
        if f.patient or f.q:
            audit.record(
                session,
                principal.actor,
                "alerts.list",
                host.clock.now(),
                patient_id=f.patient or None,
                search=f.q or None,
            )
    query = f.query()
    return renderer_of(request).page(
        request,
        "alerts.html",
        principal,
        status=400 if error else 200,
        error=error,
        f=f,
        result=result,
        rules=rules,
        states=queries.STATES,
        severities=queries.SEVERITIES,
        teams={t.name: t.label for t in host.config.routing.teams.values()},
        query=urlencode(query),
        state_links={
            s: urlencode({**{k: v for k, v in query.items() if k != "state"}, "state": s})
            for s in queries.STATES
        },
        all_states=urlencode({k: v for k, v in query.items() if k != "state"}),
        page_link=lambda n: urlencode({**query, "page": n}),
    )


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rows: list[AlertOut]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for a in rows:
        data = a.model_dump()
        writer.writerow(
            [
                _cell(data[c].isoformat() if hasattr(data[c], "isoformat") else data[c])
                for c in CSV_COLUMNS
            ]
        )
    return buf.getvalue()


@router.get("/alerts.csv")
def alert_log_csv(
    request: Request,
    principal: PageUser,
    patient: Q = None,
    rule: Q = None,
    severity: Q = None,
    state: Q = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    q: Q = None,
    team: Q = None,
) -> Response:
    """Every alert the filter selects, across all pages (exactly the filtered log)."""
    try:
        f = AlertFilter.parse(patient, rule, severity, state, date_from, date_to, q, team)
    except FilterError as exc:
        return Response(str(exc), status_code=400, media_type="text/plain")
    host, web = host_of(request), settings_of(request)
    with session_scope(host.engine) as session:
        rows = queries.export_alerts(session, f, web.tz, scope.teams_of(session, principal))
        audit.record(
            session,
            principal.actor,
            "alerts.export",
            host.clock.now(),
            patient_id=f.patient or None,
            filter=f.query(),
            rows=len(rows),
        )
    stamp = host.clock.now().strftime("%Y%m%d-%H%M")
    return Response(
        to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="alerts-{stamp}.csv"'},
    )


@router.get("/alerts/{code}")
def alert_page(request: Request, principal: PageUser, code: str) -> Response:
    host = host_of(request)
    with session_scope(host.engine) as session:
        scope.check_alert(session, principal, code)
        detail = queries.viewed_alert(session, code, principal.actor, host.clock.now())
        patient = session.get(PatientRow, detail.patient) if detail.patient else None
        baseline = {k: float(v) for k, v in patient.baseline.items()} if patient else {}
    recipients = host.config.routing.recipients
    labels = {name: r.label for name, r in recipients.items()}
    groups = {
        g: ", ".join(labels.get(m, m) for m in members)
        for g, members in host.config.routing.groups.items()
    }
    return renderer_of(request).page(
        request,
        "alert.html",
        principal,
        a=detail,
        baseline=baseline,
        labels=labels,
        groups=groups,
        step_labels={g: host.config.routing.step_label(g) for g in detail.escalation.chain},
    )


def _act(request: Request, principal: Principal, code: str, action: str, note: str) -> Response:
    host = host_of(request)
    now = host.clock.now()
    note = note[:NOTE_MAX]
    if action in ("alert.resolve", "alert.note") and not note:
        flash(request, principal, "error", "Write a note first.")
        return RedirectResponse(f"/alerts/{code}", status_code=303)
    try:
        with session_scope(host.engine) as session:
            scope.check_alert(session, principal, code)
            alert = queries.alert_row(session, code)
            if action == "alert.acknowledge":
                changed = acknowledge(session, code, principal.username, now, via="web")
                text = f"Acknowledged {alert.code} ({len(changed)} alert(s) of its notification)."
            elif action == "alert.resolve":
                resolve(session, code, principal.username, note, now)
                text = f"Resolved {alert.code}."
            else:
                add_note(session, code, principal.username, note, now)
                text = f"Note added to {alert.code}."
            audit.record(
                session,
                principal.actor,
                action,
                now,
                patient_id=alert.patient_id,
                alert_code=alert.code,
            )
    except AlertError as exc:
        text = f"Not done: {exc}"
        flash(request, principal, "error", text)
    else:
        flash(request, principal, "ok", text)
    return RedirectResponse(f"/alerts/{code.strip().upper()}", status_code=303)


@router.post("/alerts/{code}/acknowledge")
def alert_acknowledge(
    request: Request, principal: PageUser, form: CheckedForm, code: str
) -> Response:
    return _act(request, principal, code, "alert.acknowledge", "")


@router.post("/alerts/{code}/resolve")
def alert_resolve(request: Request, principal: PageUser, form: CheckedForm, code: str) -> Response:
    return _act(request, principal, code, "alert.resolve", form.get("note"))


@router.post("/alerts/{code}/note")
def alert_note(request: Request, principal: PageUser, form: CheckedForm, code: str) -> Response:
    return _act(request, principal, code, "alert.note", form.get("note"))
