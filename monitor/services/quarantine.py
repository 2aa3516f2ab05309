"""Quarantine: what could not be used waits here for a person, with its reason.

`retry` runs the kept payload through the same parser and intake again (after a
patient was enrolled or a mapping added); `discard` closes it with a reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.held import release
from monitor.services.inbound import bounded_id
from monitor.services.ingest import IngestResult, ingest_message
from monitor.services.payloads import ingest_payload
from monitor.store.models import AlertRow, QuarantineRow

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
    assume_tz = str(row.detail.get("assume_tz", "UTC"))
    try:
        messages = parse(
            row.raw,
            row.format,  # type: ignore[arg-type]
            mapping=mapping,
            assume_tz=assume_tz,
        )
    except ParseError as exc:
        row.reason = exc.reason
        session.add(row)
        return False, exc.reason
    if row.message_id is not None:
        messages = [m for m in messages if bounded_id(m.message_id) == row.message_id]
        own = [m for m in messages if bounded_id(m.sender) == row.sender]
        messages = own or messages  # rows kept before senders were recorded have none
        results: list[IngestResult] = [
            ingest_message(
                session,
                m,
                m.raw or row.raw,
                row.source,
                now,
                protocols,
                routing,
                retry_of=row.id,
                assume_tz=assume_tz,
            )
            for m in messages
        ]
        ok = bool(results) and all(r.outcome in ("stored", "duplicate") for r in results)
        reason = "; ".join(r.reason or "" for r in results if r.reason) or "taken in"
    else:
        nested = session.begin_nested()
        out = ingest_payload(
            session,
            row.raw,
            row.format,
            row.source,
            now,
            protocols,
            routing,
            mapping,
            whole=True,
            assume_tz=assume_tz,
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
    if row.kind == "value":
        release(session, row)  # the draw no longer waits on it
    log.info("quarantine.discarded", quarantine_id=row_id)
    return row


def daily_digest(
    session: Session, routing: Routing | None, now: datetime, day: str
) -> AlertRow | None:
    """Tell the coordinators, once a day, how much waits in quarantine and why.

    A service-level alert (no patient), keyed by the day, so a restart or a second
    instance never sends the day's count twice.
    """
    from monitor.services.codes import new_code
    from monitor.services.outbox import deliveries_for

    rows = waiting(session, limit=10_000)
    if not rows:
        return None
    key = f"quarantine:{day}"
    if session.exec(
        select(AlertRow).where(AlertRow.rule == "quarantine.waiting", AlertRow.key == key)
    ).first():
        return None
    reasons = Counter(r.reason.split(":")[0] for r in rows)
    top = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(3))
    oldest = min(r.received_at for r in rows)
    alert = AlertRow(
        code=new_code(session),
        patient_id=None,
        rule="quarantine.waiting",
        severity="info",
        key=key,
        at=now,
        raised_at=now,
        message=(
            f"{len(rows)} lab message(s) wait in quarantine, the oldest since "
            f"{oldest:%Y-%m-%d %H:%M} UTC ({top}). Review them on the Quarantine page or with "
            "`monitor quarantine list`, then retry or discard each."
        ),
        details={"waiting": len(rows), "reasons": dict(reasons)},
        profile="-",
        group_id=f"q-{day}",
        route="quarantine",
    )
    session.add(alert)
    session.flush()
    if routing is not None:
        alert.chain = [routing.failure_group]
        deliveries_for(session, [alert], routing.failure_group, routing, now, "alert", 0)
    log.info("quarantine.digest", waiting=len(rows))
    return alert
