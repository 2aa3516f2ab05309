"""Reading the store for the console: the alert log and its filter, one alert with its
deliveries, patients by need, one patient's course. Pages and the API both call
these, so they always show the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from markupsafe import Markup
from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from monitor.core.clinical import grades
from monitor.core.domain import LabEvent
from monitor.core.protocol import Protocol
from monitor.core.state import uln_for
from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME
from monitor.identifiers import format_identifier
from monitor.services.alerts import AlertError, by_code, deliveries_of, group_of
from monitor.services.evaluate import run_for
from monitor.services.records import event_rows, events_of, patient_of
from monitor.store.models import (
    AlertRow,
    DeliveryRow,
    EventRow,
    PatientIdentifierRow,
    PatientRow,
    QuarantineRow,
)
from monitor.web import audit, chart
from monitor.web.schemas import (
    AlertDetailOut,
    AlertListOut,
    AlertOut,
    AttemptOut,
    DeliveryOut,
    EscalationOut,
    EventOut,
    HealthOut,
    LatestValueOut,
    PatientDetailOut,
    PatientSummaryOut,
    StopLineOut,
    WaitingValueOut,
)
from monitor.web.search import SEARCH_MAX, patient_clause, team_clause

STATES: tuple[str, ...] = ("open", "acknowledged", "resolved")
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
EXPORT_LIMIT = 100_000


class FilterError(ValueError):
    """A filter value that makes no sense; the message names the field."""


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class AlertFilter:
    """The alert log's filter. Dates are whole days in the console's time zone."""

    patient: str = ""
    rule: str = ""
    q: str = ""  # patient id prefix or identifier, any case (monitor/web/search.py)
    severity: str = ""
    state: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def parse(
        cls,
        patient: str | None = None,
        rule: str | None = None,
        severity: str | None = None,
        state: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        q: str | None = None,
    ) -> AlertFilter:
        def day(name: str, value: str | None) -> date | None:
            if not value:
                return None
            try:
                return date.fromisoformat(value.strip())
            except ValueError as exc:
                raise FilterError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from exc

        sev, st = (severity or "").strip(), (state or "").strip()
        if sev and sev not in SEVERITIES:
            raise FilterError(f"severity: {sev!r} is not one of {', '.join(SEVERITIES)}")
        if st and st not in STATES:
            raise FilterError(f"state: {st!r} is not one of {', '.join(STATES)}")
        f = cls(
            (patient or "").strip(),
            (rule or "").strip(),
            (q or "").strip()[:SEARCH_MAX],
            sev,
            st,
            day("from", date_from),
            day("to", date_to),
        )
        if f.date_from and f.date_to and f.date_to < f.date_from:
            raise FilterError("to: the end date is before the start date")
        return f

    def query(self) -> dict[str, str]:
        """The filter as URL query parameters (for links, paging and the CSV export)."""
        raw = {
            "patient": self.patient,
            "rule": self.rule,
            "q": self.q,
            "severity": self.severity,
            "state": self.state,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in raw.items() if v}

    def clauses(
        self, tz: tzinfo, with_state: bool = True, teams: frozenset[str] | None = None
    ) -> list[ColumnElement[bool]]:
        """SQL for the filter; `teams` keeps patients of those care teams (None: all)."""
        where = [
            *patient_clause(self.q, AlertRow.patient_id),
            *team_clause(teams, AlertRow.patient_id),
        ]
        if self.patient:
            where.append(col(AlertRow.patient_id) == self.patient)
        if self.rule:
            where.append(col(AlertRow.rule) == self.rule)
        if self.severity:
            where.append(col(AlertRow.severity) == self.severity)
        if self.state and with_state:
            where.append(col(AlertRow.state) == self.state)
        if self.date_from:
            where.append(col(AlertRow.raised_at) >= _day_start(self.date_from, tz))
        if self.date_to:
            where.append(col(AlertRow.raised_at) < _day_start(self.date_to + timedelta(1), tz))
        return where


def _day_start(d: date, tz: tzinfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def alert_out(a: AlertRow) -> AlertOut:
    return AlertOut(
        code=a.code,
        patient=a.patient_id,
        rule=a.rule,
        severity=a.severity,
        state=a.state,
        at=a.at,
        raised_at=a.raised_at,
        message=a.message,
        profile=a.profile,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
        resolved_at=a.resolved_at,
        note=a.note,
        details=a.details,
    )


def list_alerts(
    session: Session,
    f: AlertFilter,
    tz: tzinfo,
    page: int = 1,
    per_page: int = 50,
    teams: frozenset[str] | None = None,
) -> AlertListOut:
    """One page of the filtered log, newest first, with the total and counts per state.
    `teams`: only patients of those care teams (None: every team)."""
    where = f.clauses(tz, teams=teams)
    total = int(session.exec(select(func.count()).select_from(AlertRow).where(*where)).one())
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    rows = session.exec(
        select(AlertRow)
        .where(*where)
        .order_by(col(AlertRow.raised_at).desc(), col(AlertRow.id).desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    counts = dict.fromkeys(STATES, 0)
    for state, n in session.exec(
        select(AlertRow.state, func.count())
        .where(*f.clauses(tz, with_state=False, teams=teams))
        .group_by(col(AlertRow.state))
    ):
        counts[state] = int(n)
    return AlertListOut(
        items=[alert_out(a) for a in rows], total=total, page=page, pages=pages, counts=counts
    )


def export_alerts(session: Session, f: AlertFilter, tz: tzinfo) -> list[AlertOut]:
    """Every alert the filter selects (all pages), newest first."""
    rows = session.exec(
        select(AlertRow)
        .where(*f.clauses(tz))
        .order_by(col(AlertRow.raised_at).desc(), col(AlertRow.id).desc())
        .limit(EXPORT_LIMIT)
    ).all()
    return [alert_out(a) for a in rows]


def known_rules(session: Session) -> list[str]:
    return sorted(session.exec(select(AlertRow.rule).distinct()).all())


def alert_row(session: Session, code: str) -> AlertRow:
    try:
        return by_code(session, code)
    except AlertError as exc:
        raise NotFound(f"no alert {code!r}") from exc


def viewed_alert(session: Session, code: str, actor: audit.Actor, now: datetime) -> AlertDetailOut:
    """An alert as a person sees it, page or API, with the view written to the audit log."""
    detail = alert_detail(session, code)
    audit.record(
        session, actor, "alert.view", now, patient_id=detail.patient, alert_code=detail.code
    )
    return detail


def alert_detail(session: Session, code: str) -> AlertDetailOut:
    """The alert with its notification group, escalation chain and every delivery attempt."""
    alert = alert_row(session, code)
    group = group_of(session, alert)
    lead = next((a for a in group if a.chain), None)
    if lead is None:
        lead_id = session.exec(
            select(DeliveryRow.lead_alert_id).where(DeliveryRow.group_id == alert.group_id)
        ).first()
        lead = next((a for a in group if a.id == lead_id), alert)
    deliveries = [
        DeliveryOut(
            id=d.id or 0,
            recipient=d.recipient,
            purpose=d.purpose,
            step=d.step,
            state=d.state,
            channels=d.channels,
            attempts_made=d.attempts,
            provider_id=d.provider_id,
            last_error=d.last_error,
            created_at=d.created_at,
            attempts=[
                AttemptOut(
                    channel=t.channel,
                    address=t.address,
                    started_at=t.started_at,
                    finished_at=t.finished_at,
                    outcome=t.outcome,
                    provider_id=t.provider_id,
                    error=t.error,
                )
                for t in attempts
            ],
        )
        for d, attempts in deliveries_of(session, alert)
    ]
    return AlertDetailOut(
        **alert_out(alert).model_dump(),
        group=[a.code for a in group],
        escalation=EscalationOut(
            route=lead.route,
            chain=[str(c) for c in lead.chain],
            step=lead.escalation_step,
            next_at=lead.next_escalation_at if lead.state == "open" else None,
        ),
        deliveries=deliveries,
    )


# --- patients ---------------------------------------------------------------------


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


def _event_summary(e: EventRow) -> str:
    p = e.payload
    if e.kind == "lab":
        parts = [f"{DISPLAY_NAME.get(a, a)} {chart.fmt(float(v))}" for a, v in p["results"].items()]
        return ", ".join(parts) + (" (preliminary)" if p.get("preliminary") else "")
    if e.kind == "symptoms":
        names = ", ".join(p.get("symptoms", []))
        return ("resolved" + (f"; {names}" if names else "")) if p.get("resolved") else names
    if e.kind == "dose":
        return f"{chart.fmt(float(p['dose_mg']))} mg/day"
    if e.kind == "stop":
        return "stopped" + (f": {p['reason']}" if p.get("reason") else "")
    return e.kind


@dataclass(frozen=True)
class PatientView:
    """The patient page: the data (as the API returns it), the chart, and the name."""

    out: PatientDetailOut
    chart: Markup
    display_name: str | None


def patient_detail(
    session: Session,
    patient_id: str,
    protocols: Mapping[str, Protocol],
    now: datetime,
    tz: tzinfo,
) -> PatientView:
    row = session.get(PatientRow, patient_id)
    if row is None:
        raise NotFound(f"no patient {patient_id!r}")
    counts = _open_counts(session).get(row.id, (0, 0))
    summary = patient_summary(session, row, protocols, now, counts)
    protocol = protocols.get(row.protocol_id)
    patient = patient_of(row)
    rows = event_rows(session, patient_id)
    labs = [e for e in events_of(rows) if isinstance(e, LabEvent)]
    alerts = session.exec(
        select(AlertRow)
        .where(AlertRow.patient_id == patient_id)
        .order_by(col(AlertRow.raised_at).desc(), col(AlertRow.id).desc())
    ).all()
    uln: dict[str, float] = {}
    lines: list[chart.StopLine] = []
    latest: list[LatestValueOut] = []
    points: list[chart.Point] = []
    if protocol is not None:
        uln = {a: uln_for(a, patient, None, protocol) for a in protocol.default_uln}
        lines = chart.stop_lines(protocol, patient, uln)
        seen: dict[str, LatestValueOut] = {}
        for lab in labs:
            for analyte, value in lab.results.items():
                u = uln_for(analyte, patient, lab, protocol)
                if analyte in chart.SERIES:
                    points.append(chart.Point(analyte, lab.at, value, u))
                grade = grades({analyte: value}, {analyte: u}, patient.baseline, protocol)
                seen[analyte] = LatestValueOut(
                    analyte=analyte,
                    value=value,
                    unit=CANONICAL_UNIT.get(analyte, ""),
                    uln=u,
                    multiple_of_uln=round(value / u, 3),
                    grade=grade.get(analyte, 0),
                    at=lab.at,
                )
        latest = [seen[a] for a in ("alt", "ast", "alp", "ggt", "bilirubin") if a in seen]
    doses = [chart.DoseMark(row.start, row.start_dose_mg)]
    stops = [(a.at, None) for a in alerts if a.rule.startswith("stop.")]
    changes = [
        (e.at, float(e.payload["dose_mg"]) if e.kind == "dose" else None)
        for e in rows
        if e.kind in ("dose", "stop")
    ]
    for at, mg in sorted(stops + changes, key=lambda c: c[0]):
        if mg is None and doses[-1].dose_mg is None:
            continue
        doses.append(chart.DoseMark(at, mg))
    end = max([now, *(e.at for e in rows)])
    identifiers = session.exec(
        select(PatientIdentifierRow).where(PatientIdentifierRow.patient_id == patient_id)
    ).all()
    out = PatientDetailOut(
        **summary.model_dump(),
        weight_kg=row.weight_kg,
        start=row.start,
        tpmt=row.tpmt,
        baseline={k: float(v) for k, v in row.baseline.items()},
        uln=uln,
        identifiers=[format_identifier(i.system, i.value) for i in identifiers],
        latest=latest,
        waiting=waiting_values(session, patient_id),
        stop_lines=[
            StopLineOut(
                analytes=list(ln.analytes),
                multiple_of_uln=round(ln.multiple, 3),
                label=ln.label,
                symptomatic=ln.symptomatic,
            )
            for ln in lines
        ],
        events=[
            EventOut(
                id=e.id or 0,
                kind=e.kind,
                at=e.at,
                recorded_at=e.recorded_at,
                source=e.source,
                recorded_by=e.recorded_by,
                summary=_event_summary(e),
                payload=e.payload,
            )
            for e in reversed(rows)
        ],
        alerts=[alert_out(a) for a in alerts],
    )
    svg = chart.render(points, lines, doses, row.start, end + (end - row.start) * 0.03, tz)
    return PatientView(out, svg, row.display_name)


def waiting_values(session: Session, patient_id: str) -> list[WaitingValueOut]:
    """This patient's values held in quarantine, oldest first."""
    rows = session.exec(
        select(QuarantineRow)
        .where(
            QuarantineRow.patient_id == patient_id,
            QuarantineRow.kind == "value",
            QuarantineRow.state == "waiting",
        )
        .order_by(col(QuarantineRow.id))
    ).all()
    out = []
    for r in rows:
        at = r.detail.get("at")
        out.append(
            WaitingValueOut(
                quarantine_id=r.id or 0,
                label=DISPLAY_NAME.get(r.label or "", r.label or "a value"),
                at=datetime.fromisoformat(at) if isinstance(at, str) else None,
                reason=r.reason,
            )
        )
    return out


# --- operations -------------------------------------------------------------------


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
