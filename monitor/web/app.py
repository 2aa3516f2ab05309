"""The daemon's HTTP side: the coordinators' console, its JSON API, health and the Twilio
webhooks.

`create_app` takes a `Host`: the daemon's running `Service`, or a `StandaloneHost`
that `monitor web` builds over the same database. Pages are server-rendered
(Jinja2, no JavaScript needed) and sent with a strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from monitor.paths import package_version
from monitor.store.db import session_scope
from monitor.web import (
    admin_pages,
    alert_pages,
    fhir_endpoint,
    login,
    ops_pages,
    patient_messages,
    patient_pages,
    queries,
    triage_pages,
    twilio_hooks,
)
from monitor.web.api import create_api
from monitor.web.auth import Forbidden, LoginRequired
from monitor.web.body_limit import BodyLimit
from monitor.web.csrf import CsrfError
from monitor.web.host import Host, WebSettings, web_settings
from monitor.web.queries import NotFound
from monitor.web.render import Renderer

STATIC = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(host: Host, web: WebSettings | None = None) -> FastAPI:
    web = web or web_settings(host.config.settings.raw)
    app = FastAPI(title="lab-monitor", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.host = host
    app.state.web = web
    app.state.renderer = renderer = Renderer(web.tz)
    app.include_router(twilio_hooks.router(lambda: host))
    if hasattr(host, "ingest") and hasattr(host, "fhir_push_token"):
        # FHIR push belongs to the daemon, whose Service ingests; `monitor web` has none.
        fhir = cast(fhir_endpoint.FhirContext, host)
        app.include_router(fhir_endpoint.router(lambda: fhir))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """For monitoring tools: no sign-in, counts only."""
        with session_scope(host.engine) as session:
            h = queries.health(session, host.scheduler, host.last_sweep, host.config.protocols)
        return {
            "version": package_version(),
            "scheduler_running": bool(h.scheduler_running),
            "last_sweep": h.last_sweep.isoformat() if h.last_sweep else None,
            "outbox_depth": h.outbox_depth,
            "failed_deliveries": h.failed_deliveries,
        }

    @app.get("/readyz")
    def readyz() -> Response:
        """Ready to do its job: 200, or 503 with every reason (monitor/services/readiness.py)."""
        from fastapi.responses import JSONResponse

        from monitor.services.readiness import not_ready

        watch = getattr(host, "watch", None)  # the daemon; `monitor web` has no scheduler
        reasons = not_ready(
            host.engine,
            host.config.settings.raw,
            host.now(),
            scheduler=host.scheduler,
            scheduler_here=watch is not None,
            last_sweep=host.last_sweep,
            started=getattr(watch, "started", None),
        )
        return JSONResponse(
            {"ready": not reasons, "reasons": reasons}, status_code=503 if reasons else 200
        )

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text format; counts only, no patient data (monitor/services/metrics.py)."""
        from monitor.services.metrics import CONTENT_TYPE, render

        with session_scope(host.engine) as session:
            body = render(session, host.now(), host)
        return Response(body, media_type=CONTENT_TYPE)

    for module in (
        login,
        triage_pages,
        alert_pages,
        patient_pages,
        ops_pages,
        admin_pages,
        patient_messages,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/api", create_api(host, web))

    @app.exception_handler(LoginRequired)
    def to_login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login?" + urlencode({"next": exc.next_url}), status_code=303)

    @app.exception_handler(Forbidden)
    def forbidden(request: Request, exc: Forbidden) -> Response:
        return renderer.page(
            request,
            "error.html",
            None,
            status=403,
            title="Not allowed",
            text=f"This needs the {exc.needed} role (or higher).",
        )

    @app.exception_handler(CsrfError)
    def bad_csrf(request: Request, _exc: CsrfError) -> Response:
        return renderer.page(
            request,
            "error.html",
            None,
            status=403,
            title="Form expired",
            text="The form was missing its security token or had expired. Go back, reload "
            "the page and try again. Nothing was changed.",
        )

    @app.exception_handler(NotFound)
    def not_found(request: Request, exc: NotFound) -> Response:
        return renderer.page(
            request, "error.html", None, status=404, title="Not found", text=str(exc)
        )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def body_limit(path: str) -> int:
        if path == "/fhir" or path.startswith("/fhir/"):
            return web.fhir_max_body_bytes
        if path.startswith("/twilio/"):
            return web.twilio_max_body_bytes
        return web.max_body_bytes

    app.add_middleware(BodyLimit, limit_for=body_limit)  # outermost: before anything reads
    return app
