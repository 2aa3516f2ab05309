"""The JSON API under /api/: the same data as the pages, for integrations.

Bearer tokens only (`monitor users token USER --name ...`); a token acts as its
user, and views of a patient are audited as from the web. The schema is at
/api/openapi.json. It returns the models the pages render (monitor/web/schemas.py),
except that no display name is ever returned.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from monitor.store.db import session_scope
from monitor.web import audit, queries, scope
from monitor.web.auth import Principal, host_of, settings_of, token_principal
from monitor.web.host import Host, WebSettings
from monitor.web.queries import AlertFilter, FilterError, NotFound
from monitor.web.schemas import (
    AlertDetailOut,
    AlertListOut,
    HealthOut,
    PatientDetailOut,
    PatientSummaryOut,
)

bearer = HTTPBearer(
    auto_error=False, description="An API token made with `monitor users token USER --name ...`"
)


def api_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return token_principal(request, credentials.credentials if credentials else None)


ApiUser = Annotated[Principal, Depends(api_user)]
Q = Annotated[str | None, Query()]


def create_api(host: Host, web: WebSettings) -> FastAPI:
    api = FastAPI(
        title="lab-monitor console API",
        version="1",
        description=(
            "Alerts and patients as the coordinators' console shows them. Patients are "
            "identified by id only. Authenticate with `Authorization: Bearer <token>`."
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    api.state.host = host
    api.state.web = web

    @api.exception_handler(NotFound)
    def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @api.exception_handler(FilterError)
    def bad_filter(_request: Request, exc: FilterError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @api.get("/alerts", response_model=AlertListOut)
    def alerts(
        request: Request,
        principal: ApiUser,
        patient: Q = None,
        rule: Q = None,
        severity: Q = None,
        state: Q = None,
        date_from: Annotated[str | None, Query(alias="from")] = None,
        date_to: Annotated[str | None, Query(alias="to")] = None,
        page: int = 1,
        per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> AlertListOut:
        """The alert log, newest first: filters as on the page; counts per state."""
        f = AlertFilter.parse(patient, rule, severity, state, date_from, date_to)
        h = host_of(request)
        with session_scope(h.engine) as session:
            teams = scope.teams_of(session, principal)
            result = queries.list_alerts(session, f, settings_of(request).tz, page, per_page, teams)
            if f.patient:
                audit.record(
                    session, principal.actor, "alerts.list", h.clock.now(), patient_id=f.patient
                )
        return result

    @api.get("/alerts/{code}", response_model=AlertDetailOut)
    def alert(request: Request, principal: ApiUser, code: str) -> AlertDetailOut:
        """One alert: values and thresholds, escalation, every delivery and attempt."""
        h = host_of(request)
        with session_scope(h.engine) as session:
            scope.check_alert(session, principal, code)
            detail = queries.viewed_alert(session, code, principal.actor, h.clock.now())
        return detail

    @api.get("/patients", response_model=list[PatientSummaryOut])
    def patients(request: Request, principal: ApiUser) -> list[PatientSummaryOut]:
        """Every patient, most in need of attention first."""
        h = host_of(request)
        now = h.clock.now()
        with session_scope(h.engine) as session:
            teams = scope.teams_of(session, principal)
            rows = queries.patient_summaries(session, h.config.protocols, now, teams=teams)
            audit.record(session, principal.actor, "patients.list", now, count=len(rows))
        return rows

    @api.get("/patients/{patient_id}", response_model=PatientDetailOut)
    def patient(request: Request, principal: ApiUser, patient_id: str) -> PatientDetailOut:
        """One patient: position on the timeline, latest values, stop lines, events, alerts."""
        h = host_of(request)
        now = h.clock.now()
        with session_scope(h.engine) as session:
            scope.check_patient(session, principal, patient_id)
            view = queries.patient_detail(
                session, patient_id, h.config.protocols, now, settings_of(request).tz
            )
            audit.record(session, principal.actor, "patient.view", now, patient_id=patient_id)
        return view.out

    @api.get("/health", response_model=HealthOut)
    def health(request: Request, principal: ApiUser) -> HealthOut:
        """Scheduler, last sweep, outbox depth, failed deliveries, quarantine."""
        h = host_of(request)
        with session_scope(h.engine) as session:
            return queries.health(session, h.scheduler, h.last_sweep, h.config.protocols)

    return api
