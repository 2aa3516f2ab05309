"""`monitor`: the command line for people (care team, coordinators, operators).

Every command validates its input at this edge and answers a bad value with one
line on standard error and exit status 2; writes go through intake, one
transaction each, so nothing is half-written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import structlog
import typer
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from monitor import cli_teams, doctor, install_cli
from monitor.cli_audit import record_cli
from monitor.clock import Clock, SystemClock
from monitor.core.clinical import grades
from monitor.core.protocol import Protocol, ProtocolError, load_protocol
from monitor.core.state import uln_for
from monitor.logging import configure_logging
from monitor.paths import shipped_examples_dir
from monitor.routing import Routing, RoutingError, parse_routing
from monitor.schemas import DoseIn, LabIn, PatientIn, StopIn, SymptomsIn, describe, utc
from monitor.services.evaluate import UnknownPatient, due_patients, evaluate_patient, run_for
from monitor.services.intake import IntakeError, enroll, record_event
from monitor.services.records import event_rows
from monitor.settings import Settings, SettingsError, load_settings
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, PatientIdentifierRow, PatientRow
from monitor.web import cli_commands as web_cli

app = typer.Typer(
    help="lab-monitor: liver-test safety monitoring for azathioprine reintroduction.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
lab_app = typer.Typer(help="Lab results.", no_args_is_help=True)
symptoms_app = typer.Typer(help="Symptom reports.", no_args_is_help=True)
dose_app = typer.Typer(help="Dose changes.", no_args_is_help=True)
patient_app = typer.Typer(help="One patient.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(lab_app, name="lab")
app.add_typer(symptoms_app, name="symptoms")
app.add_typer(dose_app, name="dose")
app.add_typer(patient_app, name="patient")
alerts_app = typer.Typer(help="The alert log and what people do with alerts.", no_args_is_help=True)
silence_app = typer.Typer(help="Silence a patient's non-critical alerts.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(silence_app, name="silence")
app.add_typer(web_cli.users_app, name="users")
app.command("audit")(web_cli.audit_cmd)
app.command("web")(web_cli.web_cmd)
app.command("doctor")(doctor.doctor_cmd)
app.command("oncall")(cli_teams.oncall_cmd)
patient_app.command("team")(cli_teams.patient_team_cmd)
web_cli.users_app.command("teams")(cli_teams.users_teams_cmd)
quarantine_app = typer.Typer(
    help="Input that could not be used, waiting for a person.", no_args_is_help=True
)
app.add_typer(quarantine_app, name="quarantine")

T = TypeVar("T", bound=BaseModel)
_AT = TypeAdapter(AwareDatetime)


class CliError(Exception):
    """One line for the user; exit status 2."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


@dataclass
class Ctx:
    settings: Settings
    clock: Clock

    _protocols: dict[str, Protocol] | None = None
    _engine: Engine | None = None

    def protocols(self) -> dict[str, Protocol]:
        if self._protocols is None:
            self._protocols = self.settings.protocols()
        return self._protocols

    def mapping(self) -> Any:
        from monitor.sources import load_mapping

        return load_mapping(self.settings.mapping_path)

    def routing(self) -> Routing:
        try:
            return parse_routing(self.settings.raw)
        except RoutingError as exc:
            fail(f"{self.settings.path}: {exc}")

    def engine(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = make_engine(self.settings.database_url)
            except OSError as exc:
                fail(f"database: cannot open it ({exc.strerror or exc}: {exc.filename})")
            if self.settings.database_url.startswith("sqlite"):
                upgrade(self._engine)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.engine()) as session:
            yield session


def ctx_of(ctx: typer.Context) -> Ctx:
    obj = ctx.find_root().obj
    assert isinstance(obj, Ctx)
    return obj


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (else $MONITOR_CONFIG, /etc/lab-monitor/monitor.toml, "
            "the packaged demo).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=install_cli.version_callback,
            is_eager=True,
            help="Show the version and each profile's id and version.",
        ),
    ] = False,
) -> None:
    configure_logging()
    if ctx.invoked_subcommand in ("check-config", "doctor"):
        # These load the file themselves, to report every problem, not the first.
        ctx.obj = config
        return
    ctx.obj = Ctx(settings=load_settings(config), clock=SystemClock())


@app.command("init")
def init_cmd(
    directory: Annotated[Path, typer.Argument(help="Where to write the site's config.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write an editable copy of the shipped config (demo, and production example)."""
    try:
        written = install_cli.init_config(directory, force=force)
    except FileExistsError as exc:
        fail(str(exc))
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"Edit it, then: monitor --config {directory / 'monitor.toml'} check-config")


def validate(model: type[T], data: dict[str, Any]) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fail(describe(exc))


def parse_at(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        return utc(_AT.validate_python(value))
    except ValidationError:
        fail(f"--at: {value!r} is not an ISO 8601 time with an offset (e.g. 2026-01-05T09:00Z)")


def pairs(items: list[str], option: str) -> dict[str, Any]:
    """`alt=25 ast=30` -> {"alt": 25.0, "ast": 30.0}; repeated keys collect into lists."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            fail(f"{option}: {item!r} should look like name=value")
        key, raw = item.split("=", 1)
        key = key.strip().lower()
        try:
            value: Any = float(raw)
        except ValueError:
            value = raw.strip()
        if key in out:
            out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [value]
        else:
            out[key] = value
    return out


def show_alerts(alerts: list[AlertRow]) -> None:
    for a in alerts:
        typer.echo(f"ALERT {a.code} {a.severity.upper()} {a.rule}: {a.message}")


def _write_event(
    c: Ctx, patient_id: str, model: LabIn | SymptomsIn | DoseIn | StopIn, by: str | None
) -> None:
    with c.session() as session:
        try:
            event, alerts = record_event(
                session,
                patient_id,
                model.kind,
                utc(model.at),
                model.payload(),
                c.clock.now(),
                c.protocols(),
                source="cli",
                recorded_by=by,
                routing=c.routing(),
            )
        except UnknownPatient:
            fail(f"patient: no enrolled patient {patient_id!r}")
        except IntakeError as exc:
            fail(str(exc))
        record_cli(session, f"event.{model.kind}", c.clock.now(), by, patient_id, event=event.id)
    typer.echo(f"Recorded {model.kind} event {event.id} for {patient_id}.")
    show_alerts(alerts)


# --- commands -------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the database schema to the latest revision."""
    c = ctx_of(ctx)
    engine = make_engine(c.settings.database_url)
    upgrade(engine)
    typer.echo(f"Database at the latest schema: {engine.url.render_as_string()}")


@app.command("check-config")
def check_config(
    ctx: typer.Context,
    protocol_file: Annotated[
        list[Path] | None, typer.Option("--protocol", help="Also check this profile file.")
    ] = None,
) -> None:
    """Run the service's own strict loading on the config; list every problem (exit 2)."""
    from monitor.config_check import Problem, check, unreachable_critical

    root = ctx.find_root().obj
    checked = check(root if isinstance(root, Path) else None)
    protocols = dict(checked.protocols)
    for path in protocol_file or []:
        try:
            extra = load_protocol(path)
        except ProtocolError as exc:
            checked.problems.append(Problem("--protocol", str(exc)))
            continue
        protocols = {**protocols, extra.id: extra}
    if checked.problems:
        for problem in checked.problems:
            typer.echo(f"error: {checked.file}: {problem}", err=True)
        n = len(checked.problems)
        typer.echo(f"Config NOT OK: {n} problem{'s' if n != 1 else ''}.", err=True)
        raise typer.Exit(2)
    assert checked.settings is not None and checked.routing is not None
    settings = checked.settings
    typer.echo(
        f"Config: {settings.path} (found by {settings.source}; database {settings.database_url})"
    )
    for proto in protocols.values():
        mark = " (default)" if proto.id == settings.default_protocol else ""
        typer.echo(f"Profile {proto.label}{mark}: {proto.title}")
        typer.echo(f"  file: {proto.path}")
        for line in approval_lines(proto):
            typer.echo(f"  {line}")
    typer.echo(f"Channels: {', '.join(sorted(checked.notifiers)) or 'none'}")
    nobody = unreachable_critical(checked.routing)
    if nobody and not settings.raw.get("daemon", {}).get("console_only", False):
        typer.echo(
            f"WARNING: {nobody}; `monitor run` refuses this config unless it runs with "
            "--demo or --console-only, or [daemon] console_only = true says it is intended."
        )
    typer.echo("Config OK.")


def approval_lines(proto: Protocol) -> list[str]:
    if proto.approval.approved:
        return [
            f"approved for local use by {proto.approval.approved_by} on "
            f"{proto.approval.approved_on}"
        ]
    lines = [
        f"WARNING: profile {proto.label} is UNAPPROVED: no clinician has signed it off for "
        "local use. Review every value and fill in its [approval] block before relying on it."
    ]
    if proto.approval.note:
        lines.append(f"note: {proto.approval.note}")
    return lines


@app.command("enroll")
def enroll_cmd(
    ctx: typer.Context,
    patient_id: Annotated[str | None, typer.Argument(help="Patient id (no names).")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="JSON patient object (replay format).")
    ] = None,
    weight: Annotated[float | None, typer.Option("--weight", help="kg")] = None,
    start: Annotated[str | None, typer.Option("--start", help="ISO time; default now")] = None,
    start_dose: Annotated[float | None, typer.Option("--start-dose", help="mg/day")] = None,
    prior_toxic_dose: Annotated[float | None, typer.Option("--prior-toxic-dose")] = None,
    tpmt: Annotated[str, typer.Option("--tpmt")] = "unknown",
    nudt15: Annotated[
        str, typer.Option("--nudt15", help="normal, intermediate, poor or unknown")
    ] = "unknown",
    baseline: Annotated[
        list[str] | None, typer.Option("--baseline", help="alt=22 (repeat a key for a mean)")
    ] = None,
    uln: Annotated[list[str] | None, typer.Option("--uln", help="alt=33")] = None,
    identifier: Annotated[
        list[str] | None,
        typer.Option(
            "--identifier",
            help="SYSTEM|VALUE, the FHIR token (e.g. https://fhir.nhs.uk/Id/nhs-number|"
            "9434765919, urn:oid:1.2.3|123, MRENTR|12345); AUTHORITY:VALUE where the "
            "authority has no colon or slash (MRENTR:12345); VALUE alone for senders that "
            "name no assigning authority",
        ),
    ] = None,
    protocol: Annotated[str | None, typer.Option("--protocol")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Display name, shown only on the console.")
    ] = None,
    team: Annotated[str | None, typer.Option("--team", help="Care team ([teams.<id>])")] = None,
) -> None:
    """Enrol a patient at the (re)start of azathioprine."""
    c = ctx_of(ctx)
    now = c.clock.now()
    data: dict[str, Any]
    if file is not None:
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"--file: cannot read a JSON object from {file} ({exc})")
        data = loaded.get("patient", loaded) if isinstance(loaded, dict) else {}
        if patient_id:
            data["id"] = patient_id
        if team:
            data["care_team"] = team
    else:
        data = {
            "id": patient_id,
            "weight_kg": weight,
            "start": (start or now.isoformat()),
            "tpmt": tpmt,
            "nudt15": nudt15,
            "baseline": pairs(baseline or [], "--baseline"),
            "uln": pairs(uln or [], "--uln"),
            "identifiers": identifier or [],
        }
        for key, value in (
            ("start_dose_mg", start_dose),
            ("prior_toxic_dose_mg", prior_toxic_dose),
            ("protocol", protocol),
            ("name", name),
            ("care_team", team),
        ):
            if value is not None:
                data[key] = value
        data = {k: v for k, v in data.items() if v is not None}
    model = validate(PatientIn, data)
    with c.session() as session:
        try:
            alerts = enroll(
                session, model, now, c.protocols(), c.settings.default_protocol, c.routing()
            )
        except IntakeError as exc:
            fail(str(exc))
        record_cli(session, "patient.enroll", now, None, model.id)
    typer.echo(f"Enrolled {model.id} on {model.protocol or c.settings.default_protocol}.")
    show_alerts(alerts)


@lab_app.command("add")
def lab_add(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    results: Annotated[list[str], typer.Argument(help="alt=25 ast=21 bilirubin=9")],
    at: Annotated[str | None, typer.Option("--at", help="Draw time; default now")] = None,
    unit: Annotated[list[str] | None, typer.Option("--unit", help="bilirubin=mg/dL")] = None,
    uln: Annotated[
        list[str] | None, typer.Option("--uln", help="This result's ULN: alt=40")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who records it")] = None,
) -> None:
    """Record liver test results (ALT, AST, ALP, GGT in U/L; bilirubin in umol/L)."""
    c = ctx_of(ctx)
    data = {
        "kind": "lab",
        "at": parse_at(at, c.clock.now()),
        "results": pairs(results, "results"),
        "units": pairs(unit or [], "--unit"),
        "uln": pairs(uln or [], "--uln"),
    }
    _write_event(c, patient_id, validate(LabIn, data), by)


@symptoms_app.command("add")
def symptoms_add(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    symptoms: Annotated[
        list[str], typer.Argument(help="fatigue nausea vomiting ruq_pain jaundice | resolved")
    ],
    at: Annotated[str | None, typer.Option("--at")] = None,
    by: Annotated[str | None, typer.Option("--by")] = None,
) -> None:
    """Record a symptom report (or `resolved`)."""
    c = ctx_of(ctx)
    data = {"kind": "symptoms", "at": parse_at(at, c.clock.now()), "symptoms": symptoms}
    _write_event(c, patient_id, validate(SymptomsIn, data), by)


@dose_app.command("set")
def dose_set(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    dose_mg: Annotated[float, typer.Argument(help="New daily dose in mg")],
    at: Annotated[str | None, typer.Option("--at")] = None,
    by: Annotated[str | None, typer.Option("--by")] = None,
) -> None:
    """Record a new daily dose (after a stop, this is a restart)."""
    c = ctx_of(ctx)
    data = {"kind": "dose", "at": parse_at(at, c.clock.now()), "dose_mg": dose_mg}
    _write_event(c, patient_id, validate(DoseIn, data), by)


@app.command("stop")
def stop_cmd(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")] = "",
    at: Annotated[str | None, typer.Option("--at")] = None,
    by: Annotated[str | None, typer.Option("--by")] = None,
) -> None:
    """Record that a clinician stopped azathioprine."""
    c = ctx_of(ctx)
    data = {"kind": "stop", "at": parse_at(at, c.clock.now()), "reason": reason}
    _write_event(c, patient_id, validate(StopIn, data), by)


def _fmt_time(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if dt else "-"


def patient_status(session: Session, row: PatientRow, c: Ctx, now: datetime) -> dict[str, Any]:
    protocol = c.protocols()[row.protocol_id]
    result = run_for(session, row, now, protocol)
    pos = result.position
    open_alerts = session.exec(
        select(AlertRow).where(AlertRow.patient_id == row.id, AlertRow.state == "open")
    ).all()
    return {
        "id": row.id,
        "protocol": protocol.label,
        "protocol_approved": protocol.approval.approved,
        "on_therapy": pos.on_therapy,
        "phase": pos.phase,
        "day": pos.day,
        "dose_mg": pos.dose_mg,
        "max_dose_mg": pos.max_dose_mg,
        "last_panel_at": pos.last_panel_at.isoformat() if pos.last_panel_at else None,
        "next_due": pos.next_due.isoformat() if pos.next_due else None,
        "grace_days": pos.grace_days,
        "overdue": pos.overdue,
        "escalation_allowed": pos.escalation_allowed,
        "escalation_reason": pos.escalation_reason,
        "stable": pos.stable,
        "open_alerts": len(open_alerts),
        "_pos": pos,
    }


@app.command("patients")
def patients_cmd(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """All patients: phase, dose, last panel, next due, overdue flag."""
    c = ctx_of(ctx)
    now = c.clock.now()
    with c.session() as session:
        rows = session.exec(select(PatientRow).order_by(col(PatientRow.id))).all()
        statuses = [patient_status(session, r, c, now) for r in rows]
    if as_json:
        for s in statuses:
            s.pop("_pos")
        typer.echo(json.dumps(statuses, indent=2))
        return
    if not statuses:
        typer.echo("No patients enrolled.")
        return
    header = (
        f"{'patient':<12} {'phase':<34} {'dose':>5} {'max':>5} {'last panel':<16} "
        f"{'next due':<16} {'overdue':<7} {'open':>4}"
    )
    typer.echo(header)
    for s in statuses:
        pos = s["_pos"]
        dose = f"{pos.dose_mg:g}" if pos.dose_mg is not None else "-"
        typer.echo(
            f"{s['id']:<12} {s['phase']:<34} {dose:>5} {pos.max_dose_mg:>5g} "
            f"{_fmt_time(pos.last_panel_at):<16} {_fmt_time(pos.next_due):<16} "
            f"{'OVERDUE' if pos.overdue else 'no':<7} {s['open_alerts']:>4}"
        )


@patient_app.command("show")
def patient_show(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One patient's timeline, latest values with grades, and open findings."""
    c = ctx_of(ctx)
    now = c.clock.now()
    with c.session() as session:
        row = session.get(PatientRow, patient_id)
        if row is None:
            fail(f"patient: no enrolled patient {patient_id!r}")
        status = patient_status(session, row, c, now)
        pos = status.pop("_pos")
        protocol = c.protocols()[row.protocol_id]
        result = run_for(session, row, now, protocol)
        latest: dict[str, Any] = {}
        for lab in result.state.labs:
            for analyte, value in lab.results.items():
                u = uln_for(analyte, result.state.patient, lab, protocol)
                latest[analyte] = {
                    "value": value,
                    "at": lab.at.isoformat(),
                    "uln": u,
                    "grade": grades({analyte: value}, {analyte: u}, row.baseline, protocol)[
                        analyte
                    ],
                }
        alerts = session.exec(
            select(AlertRow)
            .where(AlertRow.patient_id == patient_id, AlertRow.state == "open")
            .order_by(col(AlertRow.id))
        ).all()
        identifiers = session.exec(
            select(PatientIdentifierRow).where(PatientIdentifierRow.patient_id == patient_id)
        ).all()
        from monitor.identifiers import format_identifier

        all_events = [
            {"id": e.id, "kind": e.kind, "at": e.at.isoformat(), **e.payload, "source": e.source}
            for e in event_rows(session, patient_id)
        ]
        doc = {
            **status,
            "weight_kg": row.weight_kg,
            "start": row.start.isoformat(),
            "tpmt": row.tpmt,
            "nudt15": row.nudt15,
            "baseline": row.baseline,
            "uln": {
                a: uln_for(a, result.state.patient, None, protocol) for a in protocol.default_uln
            },
            "identifiers": [format_identifier(i.system, i.value) for i in identifiers],
            "latest": latest,
            "events": all_events,
            "open_findings": [
                {
                    "code": a.code,
                    "rule": a.rule,
                    "severity": a.severity,
                    "at": a.at.isoformat(),
                    "message": a.message,
                }
                for a in alerts
            ],
        }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(
        f"Patient {patient_id}  protocol {doc['protocol']}  TPMT {row.tpmt}  NUDT15 {row.nudt15}"
    )
    typer.echo(
        f"  {doc['phase']}; dose {pos.dose_mg if pos.dose_mg is not None else '-'} mg/day "
        f"(max {pos.max_dose_mg:g}); next panel due {_fmt_time(pos.next_due)}"
        f"{' OVERDUE' if pos.overdue else ''}"
    )
    typer.echo(
        f"  escalation: {'allowed' if pos.escalation_allowed else 'not now'} "
        f"({pos.escalation_reason})"
    )
    typer.echo("  latest values:")
    for analyte, v in latest.items():
        typer.echo(
            f"    {analyte:<10} {v['value']:>8g}  (ULN {v['uln']:g}, grade {v['grade']}) "
            f"at {v['at']}"
        )
    typer.echo("  timeline:")
    for e in all_events:
        extra = {k: v for k, v in e.items() if k not in ("id", "kind", "at", "source")}
        typer.echo(f"    {e['at']}  {e['kind']:<9} {json.dumps(extra)}")
    typer.echo(f"  open findings: {len(doc['open_findings'])}")
    for f in doc["open_findings"]:
        typer.echo(f"    {f['code']} {f['severity']:<8} {f['rule']}: {f['message']}")


@app.command("sweep")
def sweep_cmd(ctx: typer.Context) -> None:
    """Evaluate every patient whose next check time has come (what the daemon does each
    minute); for cron-style use without the daemon."""
    c = ctx_of(ctx)
    now = c.clock.now()
    with c.session() as session:
        due = due_patients(session, now)
    raised: list[AlertRow] = []
    for patient_id in due:
        with c.session() as session:
            raised += evaluate_patient(session, patient_id, now, c.protocols(), c.routing())
    typer.echo(f"Swept {len(due)} patient(s); {len(raised)} new alert(s).")
    show_alerts(raised)


@app.command("replay")
def replay_cmd(
    ctx: typer.Context,
    scenario: Annotated[Path, typer.Argument(help="Scenario JSON (see the replay contract)")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per alert")] = False,
) -> None:
    """What would the monitor have done? Runs a scenario on a simulated clock."""
    from monitor.replay import ScenarioError, load_scenario, render_table, replay

    c = ctx_of(ctx)
    try:
        parsed = load_scenario(scenario)
    except ScenarioError as exc:
        fail(str(exc))
    try:
        alerts = replay(parsed, c.protocols(), c.settings.default_protocol)
    except IntakeError as exc:
        fail(str(exc))
    if as_json:
        for a in alerts:
            typer.echo(json.dumps(a.as_json()))
    else:
        typer.echo(render_table(alerts))


@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    examples: Annotated[Path | None, typer.Option("--examples")] = None,
) -> None:
    """Enrol the example patients (shifted so their story ends now) and show their status."""
    from monitor.replay import ScenarioError, load_scenario
    from monitor.services.demo_calm import calm_history

    c = ctx_of(ctx)
    now = c.clock.now()
    for path in sorted((examples or shipped_examples_dir()).glob("*.json")):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            fail(str(exc))
        with c.session() as session:
            if session.get(PatientRow, scenario.patient.id) is not None:
                continue
        shift = now - utc(scenario.until)
        patient = scenario.patient.model_copy(update={"start": scenario.patient.start + shift})
        with c.session() as session:
            enroll(
                session,
                patient,
                utc(patient.start),
                c.protocols(),
                c.settings.default_protocol,
                c.routing(),
            )
        for event in scenario.events:
            when = utc(event.at) + shift
            with c.session() as session:
                record_event(
                    session,
                    patient.id,
                    event.kind,
                    when,
                    event.payload(),
                    when,
                    c.protocols(),
                    source="demo",
                    routing=c.routing(),
                )
        with c.session() as session:
            evaluate_patient(session, patient.id, now, c.protocols(), c.routing())
            calm_history(session, patient.id, now, c.routing())
        typer.echo(f"Enrolled example {patient.id} from {path.name}.")
    for proto in c.protocols().values():
        if not proto.approval.approved:
            typer.echo(approval_lines(proto)[0], err=True)
    _demo_user(c)
    ctx.invoke(patients_cmd, ctx=ctx, as_json=False)


def _demo_user(c: Ctx) -> None:
    """A console account for the demo, made only when the database has none."""
    import secrets as pysecrets

    from monitor.accounts import add_user, list_users

    with c.session() as session:
        if list_users(session):
            return
        password = pysecrets.token_urlsafe(12)
        add_user(session, "demo", "admin", password, c.clock.now())
    web = c.settings.raw.get("web", {})
    url = f"http://{web.get('host', '127.0.0.1')}:{web.get('port', 8080)}/"
    typer.echo(
        f"Console: {url}  sign in as 'demo' with password {password} "
        "(demo database only; change it with `monitor users passwd demo`)."
    )


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    demo: Annotated[bool, typer.Option("--demo", help="Enrol the example patients first")] = False,
    no_web: Annotated[bool, typer.Option("--no-web", help="Do not serve HTTP")] = False,
    host: Annotated[
        str | None, typer.Option("--host", help="Web address (over [web] host)")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Web port (over [web] port)")
    ] = None,
    mllp_port: Annotated[
        int | None,
        typer.Option("--mllp-port", min=0, max=65535, help="MLLP port (over [sources.mllp])"),
    ] = None,
    console_only: Annotated[
        bool,
        typer.Option("--console-only", help="Start even if critical alerts reach only the log"),
    ] = False,
) -> None:
    """Run the monitor service (deadline sweep, dispatcher, escalation, webhooks)."""
    from monitor.daemon import run_daemon

    c = ctx_of(ctx)
    c.routing()
    if demo:
        ctx.invoke(demo_cmd, ctx=ctx, examples=None)
    structlog.get_logger().info("config.found", path=str(c.settings.path), source=c.settings.source)
    try:
        run_daemon(
            str(c.settings.path),
            web=not no_web,
            demo=demo,
            console_only=console_only,
            host=host,
            port=port,
            mllp_port=mllp_port,
        )
    except SettingsError as exc:
        fail(str(exc))


def _alert_json(a: AlertRow) -> dict[str, Any]:
    return {
        "code": a.code,
        "patient": a.patient_id,
        "rule": a.rule,
        "severity": a.severity,
        "state": a.state,
        "at": a.at.isoformat(),
        "raised_at": a.raised_at.isoformat(),
        "message": a.message,
        "profile": a.profile,
        "group": a.group_id,
        "acknowledged_by": a.acknowledged_by,
        "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
        "escalation_step": a.escalation_step,
        "chain": a.chain,
        "note": a.note,
        "details": a.details,
    }


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="open|acknowledged|resolved")] = None,
    patient: Annotated[str | None, typer.Option("--patient")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The alert log, newest first."""
    from monitor.services.alerts import list_alerts

    c = ctx_of(ctx)
    if state not in (None, "open", "acknowledged", "resolved"):
        fail(f"--state: {state!r} is not open, acknowledged or resolved")
    with c.session() as session:
        rows = list_alerts(session, state, patient, limit)
    if as_json:
        for a in rows:
            typer.echo(json.dumps(_alert_json(a)))
        return
    for a in rows:
        typer.echo(
            f"{a.code}  {_fmt_time(a.raised_at)}  {a.state:<12} {a.severity:<8} "
            f"{a.patient_id:<10} {a.rule}"
        )


@alerts_app.command("show")
def alerts_show(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One alert with every delivery and every attempt."""
    from monitor.services.alerts import AlertError, by_code, deliveries_of

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            alert = by_code(session, code)
        except AlertError as exc:
            fail(str(exc))
        doc = _alert_json(alert)
        doc["deliveries"] = [
            {
                "id": d.id,
                "recipient": d.recipient,
                "purpose": d.purpose,
                "step": d.step,
                "state": d.state,
                "channels": d.channels,
                "channel_index": d.channel_index,
                "attempts": [
                    {
                        "channel": t.channel,
                        "address": t.address,
                        "started_at": t.started_at.isoformat(),
                        "outcome": t.outcome,
                        "provider_id": t.provider_id,
                        "error": t.error,
                    }
                    for t in attempts
                ],
                "provider_id": d.provider_id,
                "last_error": d.last_error,
            }
            for d, attempts in deliveries_of(session, alert)
        ]
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(
        f"{doc['code']} {doc['severity'].upper()} {doc['rule']} patient {doc['patient']} "
        f"[{doc['state']}]"
    )
    typer.echo(f"  raised {doc['raised_at']} (for {doc['at']}); profile {doc['profile']}")
    typer.echo(f"  {doc['message']}")
    if doc["acknowledged_by"]:
        typer.echo(f"  acknowledged by {doc['acknowledged_by']} at {doc['acknowledged_at']}")
    if doc["chain"]:
        typer.echo(
            f"  escalation: step {doc['escalation_step'] + 1} of {len(doc['chain'])} "
            f"({' -> '.join(doc['chain'])})"
        )
    for d in doc["deliveries"]:
        typer.echo(f"  delivery {d['id']} to {d['recipient']} ({d['purpose']}): {d['state']}")
        for t in d["attempts"]:
            typer.echo(
                f"    {t['started_at']} {t['channel']}:{t['address']} -> "
                f"{t['outcome'] or 'in flight'} {t['provider_id'] or ''} {t['error'] or ''}"
            )
    if doc["note"]:
        typer.echo("  notes:\n    " + doc["note"].replace("\n", "\n    "))


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument()],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges")],
) -> None:
    """Acknowledge an alert (and the rest of its notification); stops its escalation."""
    from monitor.services.alerts import AlertError, acknowledge

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            changed = acknowledge(session, code, by, c.clock.now())
        except AlertError as exc:
            fail(str(exc))
        record_cli(session, "alert.acknowledge", c.clock.now(), by, alert_code=code.upper())
    typer.echo(f"Acknowledged {code.upper()} ({len(changed)} alert(s)) as {by}.")


@alerts_app.command("resolve")
def alerts_resolve(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument()],
    by: Annotated[str, typer.Option("--by")],
    note: Annotated[str, typer.Option("--note")],
) -> None:
    """Resolve an alert with a note."""
    from monitor.services.alerts import AlertError, resolve

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            resolve(session, code, by, note, c.clock.now())
        except AlertError as exc:
            fail(str(exc))
        record_cli(session, "alert.resolve", c.clock.now(), by, alert_code=code.upper(), note=note)
    typer.echo(f"Resolved {code.upper()}.")


@alerts_app.command("note")
def alerts_note(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument()],
    by: Annotated[str, typer.Option("--by")],
    note: Annotated[str, typer.Argument()],
) -> None:
    """Add a note to an alert."""
    from monitor.services.alerts import AlertError, add_note

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            add_note(session, code, by, note, c.clock.now())
        except AlertError as exc:
            fail(str(exc))
        record_cli(session, "alert.note", c.clock.now(), by, alert_code=code.upper(), note=note)
    typer.echo(f"Noted on {code.upper()}.")


@silence_app.command("add")
def silence_add(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    until: Annotated[str, typer.Option("--until", help="ISO time when the silence ends")],
    by: Annotated[str, typer.Option("--by")],
) -> None:
    """Hold back a patient's non-critical alerts until a time (critical ones still go out)."""
    from monitor.services.alerts import AlertError, silence

    c = ctx_of(ctx)
    end = parse_at(until, c.clock.now())
    with c.session() as session:
        try:
            row = silence(session, patient_id, reason, end, by, c.clock.now())
        except AlertError as exc:
            fail(str(exc))
        record_cli(session, "patient.silence", c.clock.now(), by, patient_id, silence=row.id)
    typer.echo(
        f"Silenced non-critical alerts of {patient_id} until {end.isoformat()} (silence {row.id})."
    )


INGEST_BATCH = 200  # messages a back-load commits at once: group commit, short write locks


@app.command("ingest")
def ingest_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A file of HL7 v2 messages, FHIR JSON or CSV")],
    fmt: Annotated[str | None, typer.Option("--format", help="hl7 | fhir | csv")] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="Zone of times sent without an offset")
    ] = "UTC",
) -> None:
    """Back-load lab results through the same parsers and intake as the live sources."""
    from monitor.services.payloads import ingest_payload
    from monitor.sources import FORMATS, detect_format
    from monitor.sources.model import ParseError

    c = ctx_of(ctx)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"{path}: cannot read ({exc.strerror})")
    if fmt is not None and fmt not in FORMATS:
        fail(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    from monitor.sources.base import content_name, timezone_of
    from monitor.sources.limits import ParseLimits

    try:
        timezone_of({"timezone": timezone})
    except ValueError as exc:
        fail(f"--{exc}")
    if fmt is None:
        try:
            fmt = detect_format(path, raw.decode("utf-8", errors="replace"))
        except ParseError as exc:
            fail(exc.reason)
    from monitor import heap

    heap.settle()  # a back-load makes millions of objects: spare the start-up heap
    with c.session() as session:
        out = ingest_payload(
            session,
            raw,
            fmt,
            f"file:{fmt}",
            c.clock.now(),
            c.protocols(),
            c.routing(),
            c.mapping(),
            source_name=content_name(path.name, raw),
            whole=(fmt == "csv"),
            assume_tz=timezone,
            commit_every=0 if fmt == "csv" else INGEST_BATCH,
            limits=ParseLimits.from_config(c.settings.raw),  # the site's [ingest] bounds
        )
    typer.echo(
        f"{path.name}: {out.stored} stored, {out.duplicates} duplicate(s), "
        f"{out.quarantined} quarantined."
    )
    for r in out.results:
        if r.outcome == "quarantined":
            typer.echo(f"  QUARANTINED {r.message_id} (item {r.quarantine_id}): {r.reason}")
    if out.quarantine_id is not None:
        typer.echo(f"  QUARANTINED the whole file (item {out.quarantine_id}): {out.reason}")
    show_alerts(out.alerts)


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """What waits in quarantine, and why; held values name their patient, and codes the
    mapping does not know are counted by sender."""
    from monitor.core.units import ANALYTES
    from monitor.services.held import unmapped_counts
    from monitor.services.quarantine import waiting

    c = ctx_of(ctx)
    with c.session() as session:
        rows = waiting(session)
        unmapped = unmapped_counts(session, ANALYTES)
    if as_json:
        for r in rows:
            typer.echo(
                json.dumps(
                    {
                        "id": r.id,
                        "source": r.source,
                        "format": r.format,
                        "sender": r.sender,
                        "message_id": r.message_id,
                        "kind": r.kind,
                        "patient_id": r.patient_id,
                        "label": r.label,
                        "code": r.code,
                        "received_at": r.received_at.isoformat(),
                        "reason": r.reason,
                    }
                )
            )
        return
    if not rows:
        typer.echo("Nothing waits in quarantine.")
    for r in rows:
        what = f"value of {r.patient_id}" if r.kind == "value" else "message"
        typer.echo(f"{r.id:>5}  {_fmt_time(r.received_at)}  {r.source:<10} {what:<16} {r.reason}")
    if unmapped:
        typer.echo("\nUnmapped codes (held values by sender and code; add them to the mapping,")
        typer.echo("then `monitor quarantine retry ID` takes each value in):")
        for sender, code, count in unmapped:
            typer.echo(f"  {count:>5} x {code}  from {sender or '(no sender)'}")


@quarantine_app.command("show")
def quarantine_show(ctx: typer.Context, item: Annotated[int, typer.Argument()]) -> None:
    """One quarantined item with its raw payload."""
    from monitor.services.quarantine import QuarantineError, get

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            r = get(session, item)
        except QuarantineError as exc:
            fail(str(exc))
    typer.echo(
        f"item {r.id} [{r.state}] from {r.source} ({r.format}) at {r.received_at.isoformat()}"
    )
    typer.echo(f"reason: {r.reason}")
    for problem in r.detail.get("problems", []):
        typer.echo(f"  - {problem}")
    if r.resolution:
        typer.echo(f"resolution: {r.resolution} ({r.resolved_by or ''})")
    typer.echo("raw:")
    typer.echo(r.raw.replace("\r", "\n"))


@quarantine_app.command("retry")
def quarantine_retry(ctx: typer.Context, item: Annotated[int, typer.Argument()]) -> None:
    """Take a quarantined item in again (after enrolling the patient or adding a mapping)."""
    from monitor.services.quarantine import QuarantineError, retry_quarantined

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            ok, reason = retry_quarantined(
                session, item, c.clock.now(), c.protocols(), c.routing(), c.mapping()
            )
        except QuarantineError as exc:
            fail(str(exc))
        record_cli(session, "quarantine.retry", c.clock.now(), None, row=item, taken_in=ok)
    if not ok:
        typer.echo(f"Item {item} still cannot be used: {reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Item {item}: {reason}.")


@quarantine_app.command("discard")
def quarantine_discard(
    ctx: typer.Context,
    item: Annotated[int, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    by: Annotated[str, typer.Option("--by")] = "cli",
) -> None:
    """Close a quarantined item without taking it in, saying why."""
    from monitor.services.quarantine import QuarantineError, discard

    c = ctx_of(ctx)
    with c.session() as session:
        try:
            discard(session, item, by, reason, c.clock.now())
        except QuarantineError as exc:
            fail(str(exc))
        record_cli(session, "quarantine.discard", c.clock.now(), by, row=item, reason=reason)
    typer.echo(f"Item {item} discarded.")


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


from monitor import cli_patient_sms  # noqa: E402  (needs ctx_of and fail above)

cli_patient_sms.register(patient_app, ctx_of, fail)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage and input errors become one line on stderr and exit status 2."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="monitor")
        if isinstance(code, int) and code:
            sys.exit(code)  # a command's typer.Exit(n), returned in non-standalone mode
    except CliError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (SettingsError, ProtocolError) as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2)
    except OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            typer.echo(
                "error: the database is busy (another process is writing); nothing "
                "was changed, try again",
                err=True,
            )
            sys.exit(1)
        from monitor.startup import db_error_line

        typer.echo(f"error: database: cannot use it ({db_error_line(exc)})", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except typer.TyperException as exc:
        # Usage errors of the CLI framework (missing argument, bad option type...).
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(str(exc.format_message()) if hasattr(exc, "format_message") else "")
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {where}{_one_line(Exception(text))}", err=True)
        sys.exit(2)
