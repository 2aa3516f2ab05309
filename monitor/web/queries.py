"""Reading the store for the console: the alert log and its filter, one alert with its
deliveries, patients by need, one patient's course. Pages and the API both call
these, so they always show the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

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
from monitor.services.records import event_rows, events_of, patient_of
from monitor.store.models import (
    AlertRow,
    DeliveryRow,
    EventRow,
    PatientIdentifierRow,
    PatientRow,
    QuarantineRow,
)
from monitor.web import audit, chart, chart_marks, scope
from monitor.web.ops_queries import (
    failed_deliveries,
    health,
    unmapped_codes,
    waiting_quarantine,
)
from monitor.web.patient_queries import (
    _open_counts,
    need_rank,
    patient_summaries,
    patient_summary,
)
from monitor.web.schemas import (
    AlertDetailOut,
    AlertListOut,
    AlertOut,
    AttemptOut,
    DeliveryOut,
    EscalationOut,
    EventOut,
    LatestValueOut,
    PatientDetailOut,
    StopLineOut,
    WaitingValueOut,
)
from monitor.web.search import SEARCH_MAX, patient_clause, team_clause

__all__ = [
    "failed_deliveries",
    "health",
    "need_rank",
    "patient_summaries",
    "patient_summary",
    "unmapped_codes",
    "waiting_quarantine",
]

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
    team: str = ""  # one care team's patients (within what the account may see)

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
        team: str | None = None,
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
            (team or "").strip()[:64],
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
            "team": self.team,
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
        if self.team:  # strictly that team's patients: a service alert is no team's
            mine = select(PatientRow.id).where(col(PatientRow.care_team) == self.team)
            where.append(col(AlertRow.patient_id).in_(mine))
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


def export_alerts(
    session: Session, f: AlertFilter, tz: tzinfo, teams: scope.Teams = None
) -> list[AlertOut]:
    """Every alert the filter selects (all pages), newest first."""
    rows = session.exec(
        select(AlertRow)
        .where(*f.clauses(tz), *scope.alert_clauses(teams))
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
    marks = [
        chart_marks.Mark(e.at, "symptoms", "symptoms: " + _event_summary(e))
        for e in rows
        if e.kind == "symptoms" and not e.payload.get("resolved")
    ]
    marks.append(chart_marks.Mark(now, "today"))
    if summary.next_due is not None:
        marks.append(chart_marks.Mark(summary.next_due, "next-due"))
    end = max([now, *(e.at for e in rows), *([summary.next_due] if summary.next_due else [])])
    identifiers = session.exec(
        select(PatientIdentifierRow).where(PatientIdentifierRow.patient_id == patient_id)
    ).all()
    out = PatientDetailOut(
        **summary.model_dump(),
        weight_kg=row.weight_kg,
        start=row.start,
        tpmt=row.tpmt,
        nudt15=row.nudt15,
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
    until = end + (end - row.start) * 0.03
    # Both drawings go in the page; the stylesheet shows the one that fits the screen.
    svg = Markup("").join(
        chart.render(points, lines, doses, row.start, until, tz, marks=marks, frame=frame)
        for frame in (chart.WIDE, chart.NARROW)
    )
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
