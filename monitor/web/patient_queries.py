"""The patients list: where each patient stands now, and who needs attention first.

Split from queries.py (which re-exports these names), so the list and the patient
page share one summary of a patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.core.protocol import Protocol
from monitor.services.evaluate import run_for
from monitor.store.models import AlertRow, PatientRow
from monitor.web.schemas import PatientSummaryOut
from monitor.web.search import patient_clause, team_clause


def _open_counts(session: Session) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for pid, severity, n in session.exec(
        select(AlertRow.patient_id, AlertRow.severity, func.count())
        .where(AlertRow.state == "open")
        .group_by(col(AlertRow.patient_id), col(AlertRow.severity))
    ):
        if pid is None:
            continue  # service-level alerts belong to no patient
        total, critical = out.get(pid, (0, 0))
        out[pid] = (total + int(n), critical + (int(n) if severity == "critical" else 0))
    return out


def patient_summary(
    session: Session,
    row: PatientRow,
    protocols: Mapping[str, Protocol],
    now: datetime,
    open_counts: tuple[int, int],
) -> PatientSummaryOut:
    """Where the patient stands now; an engine error is shown on the row, not raised."""
    protocol = protocols.get(row.protocol_id)
    total, critical = open_counts
    base: dict[str, Any] = {
        "id": row.id,
        "open_alerts": total,
        "open_critical": critical,
        "protocol": protocol.label if protocol else row.protocol_id,
        "protocol_approved": bool(protocol and protocol.approval.approved),
    }
    try:
        if protocol is None:
            raise LookupError(f"unknown protocol profile {row.protocol_id!r}")
        pos = run_for(session, row, now, protocol).position
    except Exception as exc:  # a broken record must not hide the other patients
        return PatientSummaryOut(
            **base,
            on_therapy=False,
            phase="cannot evaluate",
            day=0,
            dose_mg=None,
            max_dose_mg=0,
            last_panel_at=None,
            next_due=None,
            overdue=False,
            escalation_allowed=False,
            escalation_reason="",
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
    return PatientSummaryOut(
        **base,
        on_therapy=pos.on_therapy,
        phase=pos.phase,
        day=pos.day,
        dose_mg=pos.dose_mg,
        max_dose_mg=pos.max_dose_mg,
        last_panel_at=pos.last_panel_at,
        next_due=pos.next_due,
        overdue=pos.overdue,
        escalation_allowed=pos.escalation_allowed,
        escalation_reason=pos.escalation_reason,
    )


def need_rank(p: PatientSummaryOut) -> tuple[int, datetime, str]:
    """What needs attention first: open critical alerts, then overdue labs, then any open
    alert, then the rest; within each, the earliest next due date."""
    if p.open_critical or p.error:
        rank = 0
    elif p.overdue:
        rank = 1
    elif p.open_alerts:
        rank = 2
    else:
        rank = 3
    return rank, p.next_due or datetime.max.replace(tzinfo=UTC), p.id


def patient_summaries(
    session: Session,
    protocols: Mapping[str, Protocol],
    now: datetime,
    search: str = "",
    teams: frozenset[str] | None = None,
) -> list[PatientSummaryOut]:
    """Patients by need; `search` is an id prefix or identifier (any case), `teams` the
    care teams to keep (None: every team)."""
    counts = _open_counts(session)
    where = [*patient_clause(search, PatientRow.id), *team_clause(teams, PatientRow.id)]
    rows = session.exec(select(PatientRow).where(*where).order_by(col(PatientRow.id))).all()
    out = [patient_summary(session, r, protocols, now, counts.get(r.id, (0, 0))) for r in rows]
    return sorted(out, key=need_rank)
