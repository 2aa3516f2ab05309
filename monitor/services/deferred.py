"""Evaluation once per batch of stored messages, before the batch's commit.

Judging each message as it was stored cost a dozen statements a message; a batch
(the group writer's, or `monitor ingest`'s commit_every) instead stores every
message, then judges every patient it touched in one `evaluate_patients` call, in
the same transaction: an alert is still written before the sender's ACK, and a
patient with several messages in the batch gets one notification for all of them.

An evaluation that fails must not lose the stored results: it runs in a savepoint,
and the patients it could not judge are made due now, so the next sweep judges
them again and raises `system.evaluation_error` if it still fails.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

import structlog
from sqlalchemy import update
from sqlmodel import Session

from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.evaluate import UnknownPatient, evaluate_patients
from monitor.services.ingest import IngestResult
from monitor.store.models import AlertRow
from monitor.store.tables import PATIENTS

log = structlog.get_logger(__name__)


def evaluate_results(
    session: Session,
    results: Iterable[IngestResult],
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
    more_to_come: Collection[str] = (),
) -> list[AlertRow]:
    """Judge every patient a result left `to_evaluate`; each patient's new alerts go on
    their last result. Returns every new alert. Patients in `more_to_come` (a
    back-load holds more of their results further on) are judged up to their latest
    stored event, not `now`: stop lines are judged at once, missed tests only once
    the rest of their results is in."""
    last: dict[str, IngestResult] = {}
    for r in results:
        if r.to_evaluate and r.patient_id is not None:
            last[r.patient_id] = r
            r.to_evaluate = False
    if not last:
        return []
    ids = sorted(last)
    savepoint = session.begin_nested()
    try:
        done = evaluate_patients(session, ids, now, protocols, routing, to_latest=more_to_come)
        savepoint.commit()
    except Exception:
        savepoint.rollback()
        log.exception("ingest.evaluation_failed", patients=len(ids))
        _due_now(session, ids, now)
        return []
    failed = [pid for pid, exc in done.failed.items() if not isinstance(exc, UnknownPatient)]
    for pid in failed:
        log.error("ingest.evaluation_error", patient_id=pid, exc_info=done.failed[pid])
    _due_now(session, failed, now)
    for alert in done.alerts:
        assert alert.patient_id is not None
        last[alert.patient_id].alerts.append(alert)
    return done.alerts


def _due_now(session: Session, ids: list[str], now: datetime) -> None:
    """The sweep's work: these patients are judged again at its next run."""
    if ids:
        session.execute(update(PATIENTS).where(PATIENTS.c.id.in_(ids)).values(next_check_at=now))
