"""Driving the service's intake the way the CLI and sources do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select

from monitor.schemas import LabIn, PatientIn
from monitor.services.intake import enroll, record_event
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, DeliveryAttemptRow, DeliveryRow
from tests.daemon.conftest import START, Rig


def enrol(rig: Rig, pid: str = "P-1", start: datetime = START, **kw: Any) -> list[AlertRow]:
    data = {
        "id": pid,
        "weight_kg": 70,
        "start": start.isoformat(),
        "tpmt": "normal",
        "baseline": {"alt": 20, "ast": 20},
        **kw,
    }
    with session_scope(rig.service.engine) as s:
        return enroll(
            s,
            PatientIn.model_validate(data),
            rig.clock.now(),
            rig.service.config.protocols,
            "azathioprine-seed",
            rig.service.config.routing,
        )


def lab(rig: Rig, pid: str, **results: float) -> list[AlertRow]:
    model = LabIn.model_validate(
        {"kind": "lab", "at": rig.clock.now().isoformat(), "results": results}
    )
    with session_scope(rig.service.engine) as s:
        _, alerts = record_event(
            s,
            pid,
            "lab",
            model.at,
            model.payload(),
            rig.clock.now(),
            rig.service.config.protocols,
            routing=rig.service.config.routing,
        )
    return alerts


def deliveries(rig: Rig) -> list[DeliveryRow]:
    with session_scope(rig.service.engine) as s:
        return list(s.exec(select(DeliveryRow).order_by(DeliveryRow.id)))  # type: ignore[arg-type]


def attempts(rig: Rig) -> list[DeliveryAttemptRow]:
    with session_scope(rig.service.engine) as s:
        return list(s.exec(select(DeliveryAttemptRow)))


def alerts(rig: Rig) -> list[AlertRow]:
    with session_scope(rig.service.engine) as s:
        return list(s.exec(select(AlertRow).order_by(AlertRow.id)))  # type: ignore[arg-type]


async def drain(rig: Rig, step: timedelta = timedelta(seconds=0), rounds: int = 20) -> None:
    """Run the dispatcher until nothing is due, moving the pinned clock by `step`."""
    for _ in range(rounds):
        n = await rig.service.dispatch()
        if n == 0 and step == timedelta(0):
            return
        rig.clock.advance(step)
