"""The shape of `monitor.toml`: every table and key the service reads, and nothing else.

Each model forbids unknown keys, so `[chanels.console]`, `sweep_second` or `[web] prot`
is an error naming the key instead of a silent default. Values are strict (a port is
an integer, not "8080"). Cross-references (a route naming a group, a contact naming a
channel), time zones, secrets and the channels' own settings are checked in
`monitor.config_check`, which reads these models. A new key the service reads must be
added here, or every config that sets it is refused.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Severity = Literal["critical", "warning", "info"]


def _as_list(value: Any) -> Any:
    """A single string where a list is expected is that one item."""
    return [value] if isinstance(value, str) else value


def _clock(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"{value!r} must look like 22:00")
    return value


def _hours(value: Any) -> Any:
    if isinstance(value, str):
        parts = value.split("-")
        if len(parts) != 2:
            raise ValueError(f"{value!r} must look like 08:00-18:00")
        for part in parts:
            _clock(part.strip())
    return value


Strings = Annotated[list[str], BeforeValidator(_as_list)]
WorkingHours = Annotated[str, BeforeValidator(_hours)]
Days = Annotated[
    list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], BeforeValidator(_as_list)
]
Severities = Annotated[list[Severity], BeforeValidator(_as_list)]
Clock = Annotated[str, BeforeValidator(_clock)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (tests)
NonEmpty = Annotated[str, Field(min_length=1)]


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DatabaseTable(Table):
    url: str = ""


class ProtocolsTable(Table):
    dir: str = "protocols"
    default: NonEmpty


class ChannelTable(BaseModel):
    """`kind` here; the notifier of that kind checks (and refuses unknown) the rest."""

    model_config = ConfigDict(extra="allow", strict=True)
    kind: NonEmpty
    max_concurrency: Count | None = None  # sends at once on this channel (the dispatcher)


class ContactTable(Table):
    channel: NonEmpty
    address: str = ""


class RecipientTable(Table):
    label: str | None = None
    contacts: Annotated[list[ContactTable], Field(min_length=1)]


class RouteTable(Table):
    name: str | None = None
    rules: Strings = []
    severities: Severities = []
    escalation: Annotated[Strings, Field(min_length=1)]


class TeamTable(Table):
    """A care team (monitor/teams.py): its members, routes and quiet hours; `sources`
    are the HL7 PV1-3 / FHIR performer values that put a patient in it."""

    label: str | None = None
    members: Strings = []
    sources: Strings = []
    routes: list[RouteTable] = []
    quiet_hours: QuietHoursTable | None = None


class OverrideTable(Table):
    member: NonEmpty
    start: Any  # a TOML date-time or ISO text; local (the rota's zone) without offset
    end: Any


class RotaTable(Table):
    """An on-call rota (monitor/rotas.py): members in order, handing over at a local time."""

    label: str | None = None
    members: Annotated[Strings, Field(min_length=1)]
    handover: Literal["daily", "weekly"] = "weekly"
    handover_at: Clock = "09:00"
    start: Any  # the local date the first member's first shift starts
    timezone: NonEmpty | None = None  # default: [web] timezone, then quiet hours' zone
    overrides: list[OverrideTable] = []


class EscalationTable(Table):
    critical_ack_minutes: Positive = 15
    warning_repeat_minutes: Positive = 240
    delivery_failure_group: NonEmpty = "coordinators"


class QuietHoursTable(Table):
    start: Clock
    end: Clock
    timezone: NonEmpty = "UTC"


class DispatchTable(Table):
    max_attempts: Count = 8
    retry_base_s: Positive = 5
    retry_max_s: Positive = 600
    send_timeout_s: Positive = 20
    batch: Count = 50


class DaemonTable(Table):
    sweep_seconds: Positive = 60
    dispatch_seconds: Positive = 1
    escalation_seconds: Positive = 30
    # True says a console-only config (no SMS, email or webhook for critical alerts)
    # is intended; without it `monitor run` refuses such a config outside --demo.
    console_only: bool = False
    # `monitor doctor`'s channel checks (SMTP login, Twilio account fetch) at start:
    # credentials a server refuses stop the start; an unreachable server is logged.
    check_channels_at_start: bool = False
    # Readiness: the last sweep must be younger than this (default 3 sweeps + 60 s),
    # and no delivery may wait longer than outbox_stuck_s.
    ready_sweep_age_s: Positive | None = None
    outbox_stuck_s: Positive = 600
    # A dead man's switch: GET this URL after each successful sweep.
    heartbeat_url: NonEmpty | None = None
    heartbeat_timeout_s: Positive = 5
    # Failover: an instance whose heartbeat lease lapsed has its claims freed.
    instance_lease_seconds: Positive = 15


class WebTable(Table):
    enabled: bool = True
    host: NonEmpty = "127.0.0.1"
    port: Port = 8080
    public_url: NonEmpty | None = None
    secure_cookies: bool = False
    same_site: Literal["lax", "strict"] = "lax"
    session_idle_minutes: Positive = 30
    session_max_hours: Positive = 12
    login_max_failures_per_user: Count = 5
    login_max_failures_per_ip: Count = 20
    login_window_minutes: Positive = 15
    page_size: Count = 50
    timezone: NonEmpty | None = None
    # Bounds and trust (monitor/web/host.py WebSettings has the meaning of each).
    max_body_bytes: Count = 64 * 1024
    fhir_max_body_bytes: Count = 10 * 1024 * 1024
    twilio_max_body_bytes: Count = 64 * 1024
    fhir_push_allow_without_token: bool = False
    trusted_proxies: Strings = []
    login_slowdown_after_failures: Count = 10
    login_max_delay_seconds: Positive = 60
    header_timeout_s: Positive = 10
    keep_alive_timeout_s: Positive = 5
    max_header_bytes: Count = 16 * 1024
    limit_concurrency: Count = 1000


class SourceTable(Table):
    enabled: bool = False
    timezone: NonEmpty = "UTC"
    # Silence detection: a feed that delivers nothing for this long (plus grace)
    # raises system.source_silent to the coordinators.
    expect_every_minutes: Positive | None = None
    silence_grace_minutes: Positive = 15
    # Only time inside these hours and days (the source's timezone) counts as silence.
    working_hours: WorkingHours | None = None
    working_days: Days = []


class MllpTable(SourceTable):
    host: NonEmpty = "127.0.0.1"
    port: Port = 2575
    max_connections: Count = 50  # past this a new connection is closed at once
    idle_timeout_s: Positive = 120  # no byte for this long: closed
    frame_timeout_s: Positive = 30  # a frame started and not ended in time: closed
    max_message_bytes: Count = 8 * 1024 * 1024  # a bigger frame: dropped, connection closed
    tls_cert: str | None = None  # PEM certificate chain: turns TLS on (with tls_key)
    tls_key: str | None = None  # PEM private key; $CREDENTIALS_DIRECTORY is expanded
    tls_client_ca: str | None = None  # PEM CAs: a client certificate signed by one is required


class CsvTable(SourceTable):
    dir: NonEmpty = "inbox"
    scan_seconds: Positive = 10
    min_age_s: Positive = 2
    max_file_bytes: Count = 20 * 1024 * 1024  # bigger files are set aside unread


class FhirPollTable(SourceTable):
    base_url: NonEmpty | None = None
    codes: Strings | None = None
    page_size: Count = 100
    start_from: NonEmpty = "1970-01-01T00:00:00Z"
    timeout_s: Positive = 20
    interval_seconds: Positive = 300


class SourcesTable(Table):
    quarantine_report_at: Clock = "08:00"
    mapping: NonEmpty | None = None
    mllp: MllpTable | None = None
    csv: CsvTable | None = None
    fhir_poll: FhirPollTable | None = None


class IngestTable(Table):
    """Parse-time bounds (`monitor.sources.limits.ParseLimits`; the defaults are its)."""

    max_bytes: Count = 4 * 1024 * 1024
    max_segments: Count = 2_000
    max_separators_per_segment: Count = 10_000
    max_separators_per_message: Count = 50_000
    fhir_max_bytes: Count = 10 * 1024 * 1024
    fhir_max_depth: Count = 64


class WatchTable(Table):
    """Watching the watcher (monitor/services/watch_jobs.py)."""

    feed_check_seconds: Positive = 60  # how often silent feeds are looked for
    audit_seconds: Positive = 300  # how often the delivery auditor runs
    # A delivery still pending or sending this long past its due time is a gap.
    delivery_gap_minutes: Positive = 15
    daily_summary: bool = True  # the coordinators' daily summary
    summary_at: Clock = "07:30"  # when, in the quiet-hours time zone


class PatientSmsTeamTable(Table):
    """One care team's own clinic name and HELP number in its patients' SMS."""

    clinic: NonEmpty
    help_number: NonEmpty


class PatientSmsTable(Table):
    """Patients in the loop (issue 14): reminders, recalls, check-ins by SMS.

    `clinic` and `help_number` are the site's; `[patient_sms.teams.<team>]` gives a
    care team its own (`monitor.services.patient_sms.clinic_for`).
    """

    enabled: bool = False
    channel: NonEmpty = "sms"  # a twilio_sms channel of [channels]
    messages_dir: NonEmpty = "messages"  # relative to this file
    languages: Strings = ["en"]
    clinic: NonEmpty = "your clinic"
    help_number: NonEmpty = "+440000000000"
    timezone: NonEmpty = "UTC"
    sending_hours: WorkingHours = "09:00-19:00"
    reminder_days_before: Count = 2
    second_recall_after_days: Count = 3
    non_attendance_count: Count = 2
    checkin_weeks: Annotated[int, Field(ge=0)] = 12
    checkin_days_after_increase: Count = 2
    teams: dict[str, PatientSmsTeamTable] = {}


class ConfigFile(Table):
    """The whole of monitor.toml."""

    database: DatabaseTable = DatabaseTable()
    protocols: ProtocolsTable
    channels: dict[str, ChannelTable] = {}
    recipients: dict[str, RecipientTable] = {}
    groups: dict[str, Strings] = {}
    routes: list[RouteTable] = []
    teams: dict[str, TeamTable] = {}
    rotas: dict[str, RotaTable] = {}
    escalation: EscalationTable = EscalationTable()
    quiet_hours: QuietHoursTable | None = None
    dispatch: DispatchTable = DispatchTable()
    daemon: DaemonTable = DaemonTable()
    web: WebTable = WebTable()
    sources: SourcesTable = SourcesTable()
    ingest: IngestTable = IngestTable()
    watch: WatchTable = WatchTable()
    patient_sms: PatientSmsTable = PatientSmsTable()
