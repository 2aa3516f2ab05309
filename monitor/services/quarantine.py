"""Quarantine: what could not be used waits here for a person, with its reason.

`retry` runs the kept payload through the same parser and intake again (after a
patient was enrolled or a mapping added); `discard` closes it with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.ingest import IngestResult, ingest_message, ingest_payload
from monitor.store.models import QuarantineRow

log = structlog.get_logger(__name__)


class QuarantineError(LookupError):
    pass


def waiting(session: Session, limit: int = 500) -> list[QuarantineRow]:
    return list(
        session.exec(
            select(QuarantineRow)
            .where(QuarantineRow.state == "waiting")
            .order_by(col(QuarantineRow.id))
            .limit(limit)
        )
    )


def count_waiting(session: Session) -> int:
    return int(
        session.exec(
            select(func.count()).select_from(QuarantineRow).where(QuarantineRow.state == "waiting")
        ).one()
    )


def get(session: Session, row_id: int) -> QuarantineRow:
    row = session.get(QuarantineRow, row_id)
    if row is None:
        raise QuarantineError(f"id: no quarantined item {row_id}")
    return row


def retry_quarantined(
    session: Session,
    row_id: int,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
    mapping: Any = None,
) -> tuple[bool, str]:
    """Try a waiting item again; (taken in?, what happened in words)."""
    from monitor.sources import parse
    from monitor.sources.model import ParseError

    row = get(session, row_id)
    if row.state != "waiting":
        raise QuarantineError(f"id: item {row_id} is {row.state}, not waiting")
    try:
        messages = parse(row.raw, row.format, mapping=mapping)  # type: ignore[arg-type]
    except ParseError as exc:
        row.reason = exc.reason
        session.add(row)
        return False, exc.reason
    if row.message_id is not None:
        messages = [m for m in messages if m.message_id == row.message_id]
        results: list[IngestResult] = [
            ingest_message(
                session, m, m.raw or row.raw, row.source, now, protocols, routing, retry_of=row.id
            )
            for m in messages
        ]
        ok = bool(results) and all(r.outcome in ("stored", "duplicate") for r in results)
        reason = "; ".join(r.reason or "" for r in results if r.reason) or "taken in"
    else:
        nested = session.begin_nested()
        out = ingest_payload(
            session, row.raw, row.format, row.source, now, protocols, routing, mapping, whole=True
        )
        ok = out.quarantine_id is None
        if not ok:
            nested.rollback()  # the new quarantine row; the old one keeps waiting
            reason = out.reason or "still not usable"
        else:
            nested.commit()
            reason = f"taken in: {out.stored} message(s)"
    if ok:
        row.state, row.resolved_at, row.resolution = "retried", now, reason
    else:
        row.reason = reason
    session.add(row)
    log.info("quarantine.retry", quarantine_id=row_id, taken_in=ok)
    return ok, reason


def discard(session: Session, row_id: int, by: str, reason: str, now: datetime) -> QuarantineRow:
    row = get(session, row_id)
    if row.state != "waiting":
        raise QuarantineError(f"id: item {row_id} is {row.state}, not waiting")
    if not reason.strip():
        raise QuarantineError("reason: say why it is discarded")
    row.state, row.resolved_by, row.resolved_at = "discarded", by, now
    row.resolution = reason.strip()
    session.add(row)
    log.info("quarantine.discarded", quarantine_id=row_id)
    return row
