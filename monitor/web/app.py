"""The daemon's HTTP side: health, and the Twilio webhooks (the console comes later)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import col, select

from monitor.store.db import session_scope
from monitor.store.models import DeliveryRow
from monitor.web import fhir_endpoint, twilio_hooks

if TYPE_CHECKING:
    from monitor.daemon import Service


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="lab-monitor", docs_url=None, redoc_url=None)
    app.include_router(twilio_hooks.router(lambda: service))
    app.include_router(fhir_endpoint.router(lambda: service))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        with session_scope(service.engine) as session:
            depth = session.exec(
                select(func.count())
                .select_from(DeliveryRow)
                .where(col(DeliveryRow.state).in_(["pending", "sending"]))
            ).one()
            failed = session.exec(
                select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "failed")
            ).one()
        sched = service.scheduler
        return {
            "scheduler_running": bool(sched and sched.running),
            "last_sweep": service.last_sweep.isoformat() if service.last_sweep else None,
            "outbox_depth": depth,
            "failed_deliveries": failed,
        }

    return app
