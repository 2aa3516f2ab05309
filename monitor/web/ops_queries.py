"""Operations reads for the health and quarantine pages (split from queries.py, which
re-exports these names)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.store.models import AlertRow, DeliveryRow, PatientRow, QuarantineRow
from monitor.web.schemas import HealthOut


def health(
    session: Session, scheduler: Any, last_sweep: datetime | None, protocols: Mapping[str, Protocol]
) -> HealthOut:
    """What /healthz reports, plus what the health page adds for people."""

    def count(model: Any, *where: Any) -> int:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

    last_eval = session.exec(select(func.max(PatientRow.evaluated_at))).one()
    return HealthOut(
        scheduler_running=bool(scheduler and scheduler.running) if scheduler is not None else None,
        scheduler_here=scheduler is not None,
        last_sweep=last_sweep,
        last_evaluation=_aware(last_eval),
        outbox_depth=count(DeliveryRow, col(DeliveryRow.state).in_(["pending", "sending"])),
        failed_deliveries=count(DeliveryRow, DeliveryRow.state == "failed"),
        quarantine_waiting=count(QuarantineRow, QuarantineRow.state == "waiting"),
        unapproved_profiles=[p.label for p in protocols.values() if not p.approval.approved],
    )


def _aware(value: Any) -> datetime | None:
    """`max()` over a UTC column comes back naive on SQLite: it is UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def failed_deliveries(session: Session, limit: int = 50) -> list[tuple[DeliveryRow, str]]:
    """The latest failed deliveries with their lead alert's code."""
    stmt = (
        select(DeliveryRow, AlertRow.code)
        .where(DeliveryRow.state == "failed", DeliveryRow.lead_alert_id == AlertRow.id)
        .order_by(col(DeliveryRow.updated_at).desc())
        .limit(limit)
    )
    return [(d, code) for d, code in session.exec(stmt)]


def unmapped_codes(session: Session) -> list[tuple[str, str, int]]:
    """(sender, code, waiting values): codes the mapping does not know, by sender."""
    from monitor.core.units import ANALYTES
    from monitor.services.held import unmapped_counts

    return unmapped_counts(session, ANALYTES)


def waiting_quarantine(session: Session, limit: int = 200) -> list[QuarantineRow]:
    return list(
        session.exec(
            select(QuarantineRow)
            .where(QuarantineRow.state == "waiting")
            .order_by(col(QuarantineRow.received_at).desc())
            .limit(limit)
        )
    )
