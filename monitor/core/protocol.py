"""Protocol profiles: clinical policy as data, loaded into frozen dataclasses.

A profile is refused at load when a key is missing, has the wrong type or makes the
profile inconsistent; the error names the key, so a clinician editing the TOML file
knows what to fix. No clinical number lives in code: everything the rules compare
against comes from here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.core.units import ANALYTES


class ProtocolError(ValueError):
    """A profile that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class Approval:
    status: str
    approved_by: str
    approved_on: str
    note: str

    @property
    def approved(self) -> bool:
        return self.status == "approved" and bool(self.approved_by) and bool(self.approved_on)


@dataclass(frozen=True)
class Dosing:
    start_dose_mg: float
    step_mg: float
    step_interval_min_days: int
    step_interval_max_days: int
    max_mg_per_kg: float
    below_prior_toxic_dose: bool


@dataclass(frozen=True)
class Symptoms:
    names: tuple[str, ...]
    active_days: int
    reevaluate_panel_within_days: int


@dataclass(frozen=True)
class TransaminaseStop:
    """ALT/AST line: a multiple of baseline and/or an absolute value in U/L."""

    baseline_multiple: float | None
    absolute_u_per_l: float | None
    inclusive: bool


@dataclass(frozen=True)
class BilirubinStop:
    uln_multiple: float
    inclusive: bool
    transaminase_above_uln_multiple: float


@dataclass(frozen=True)
class Stop:
    transaminase: TransaminaseStop | None
    transaminase_symptomatic: TransaminaseStop | None
    bilirubin: BilirubinStop | None
    grade4: bool


@dataclass(frozen=True)
class Cholestatic:
    """The cholestatic tier: ALP, GGT or bilirubin at or above a CTCAE grade."""

    alp_min_grade: int
    ggt_min_grade: int
    bilirubin_min_grade: int


@dataclass(frozen=True)
class Warn:
    transaminase_min_grade: int
    repeat_lfts_within_days: tuple[int, int]
    # A warning that asks for repeat LFTs within N days (the upper bound) or urgently
    # sets the next due time; `lab.overdue` fires after the grace if none comes.
    repeat_grace_days: int
    urgent_within_hours: int
    urgent_grace_hours: int
    cholestatic: Cholestatic | None


@dataclass(frozen=True)
class Pharmacogenomics:
    """TPMT / NUDT15 metaboliser status (CPIC): what changes for reduced activity."""

    poor_escalation_reminders: bool
    intermediate_max_mg_per_kg: float
    # Whether an unrecorded NUDT15 status raises `enrollment.nudt15_unknown` (TPMT
    # unknown always does): a profile whose source asks for NUDT15 testing says so.
    nudt15_unknown_alert: bool


@dataclass(frozen=True)
class GradeBounds:
    """CTCAE lower bounds of grades 1..4 as multiples of ULN or of an abnormal baseline."""

    uln: tuple[float, float, float, float]
    baseline: tuple[float, float, float, float]


@dataclass(frozen=True)
class Pattern:
    hepatocellular_min_r: float
    cholestatic_max_r: float


@dataclass(frozen=True)
class HysLaw:
    transaminase_uln_multiple: float
    bilirubin_uln_multiple: float
    alp_below_uln_multiple: float


@dataclass(frozen=True)
class ScheduleRow:
    from_day: int
    gap_days: int
    grace_days: int
    stable_gap_days: int | None
    stable_grace_days: int | None


@dataclass(frozen=True)
class Schedule:
    clock: str
    rows: tuple[ScheduleRow, ...]
    stable_window_days: int | None
    post_increase_window_days: int | None
    post_increase_max_gap_days: int | None
    post_increase_grace_days: int | None

    def row_for_day(self, day: int) -> ScheduleRow:
        chosen = self.rows[0]
        for row in self.rows:
            if row.from_day <= day:
                chosen = row
        return chosen


@dataclass(frozen=True)
class Protocol:
    id: str
    version: str
    title: str
    drug: str
    sources: tuple[str, ...]
    approval: Approval
    dosing: Dosing
    symptoms: Symptoms
    stop: Stop
    warn: Warn
    grading: Mapping[str, GradeBounds]
    pattern: Pattern
    hys_law: HysLaw
    default_uln: Mapping[str, float]
    combine_within_hours: int
    preliminary_results_count: bool
    schedule: Schedule
    alternatives: str
    increase_note: str
    pharmacogenomics: Pharmacogenomics
    cholestatic_note: str
    poor_metaboliser_advice: str
    path: str = ""

    @property
    def label(self) -> str:
        return f"{self.id} v{self.version}"


class _Reader:
    """Typed access to a TOML table that reports the full dotted key on error."""

    def __init__(self, data: Mapping[str, Any], prefix: str) -> None:
        self.data = data
        self.prefix = prefix
        self.seen: set[str] = set()
        self.children: list[_Reader] = []

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def has(self, name: str) -> bool:
        self.seen.add(name)
        return name in self.data

    def child(self, data: Mapping[str, Any], prefix: str) -> _Reader:
        reader = _Reader(data, prefix)
        self.children.append(reader)
        return reader

    def refuse_unknown(self) -> None:
        """A key nobody read is a typo or a setting this version does not know: refused,
        so a clinician's edit never silently does nothing."""
        for name in self.data:
            if name not in self.seen:
                raise ProtocolError(f"{self.key(name)}: unknown key")
        for child in self.children:
            child.refuse_unknown()

    def table(self, name: str, optional: bool = False) -> _Reader | None:
        self.seen.add(name)
        value = self.data.get(name)
        if value is None:
            if optional:
                return None
            raise ProtocolError(f"{self.key(name)}: missing table")
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.key(name)}: must be a table")
        return self.child(value, self.key(name))

    def req_table(self, name: str) -> _Reader:
        table = self.table(name)
        assert table is not None
        return table

    def _get(self, name: str) -> Any:
        self.seen.add(name)
        if name not in self.data:
            raise ProtocolError(f"{self.key(name)}: missing")
        return self.data[name]

    def text(self, name: str, default: str | None = None) -> str:
        self.seen.add(name)
        if default is not None and name not in self.data:
            return default
        value = self._get(name)
        if not isinstance(value, str):
            raise ProtocolError(f"{self.key(name)}: must be a string")
        return value

    def num(self, name: str, positive: bool = True) -> float:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{self.key(name)}: must be a number")
        if positive and value <= 0:
            raise ProtocolError(f"{self.key(name)}: must be greater than 0 (got {value})")
        return float(value)

    def opt_num(self, name: str) -> float | None:
        self.seen.add(name)
        return self.num(name) if name in self.data else None

    def whole(self, name: str, minimum: int = 1) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{self.key(name)}: must be a whole number")
        if value < minimum:
            raise ProtocolError(f"{self.key(name)}: must be at least {minimum} (got {value})")
        return value

    def opt_int(self, name: str) -> int | None:
        self.seen.add(name)
        return self.whole(name) if name in self.data else None

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise ProtocolError(f"{self.key(name)}: must be true or false")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProtocolError(f"{self.key(name)}: must be a list of strings")
        return tuple(value)

    def num_list(self, name: str, length: int) -> tuple[float, ...]:
        value = self._get(name)
        if (
            not isinstance(value, list)
            or len(value) != length
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise ProtocolError(f"{self.key(name)}: must be a list of {length} numbers")
        return tuple(float(v) for v in value)

    def comparison(self, name: str = "comparison") -> bool:
        value = self.text(name)
        if value not in ("ge", "gt"):
            raise ProtocolError(f"{self.key(name)}: must be 'ge' (>=) or 'gt' (>), got {value!r}")
        return value == "ge"


def _transaminase_stop(r: _Reader | None) -> TransaminaseStop | None:
    if r is None:
        return None
    stop = TransaminaseStop(
        baseline_multiple=r.opt_num("baseline_multiple"),
        absolute_u_per_l=r.opt_num("absolute_u_per_l"),
        inclusive=r.comparison(),
    )
    if stop.baseline_multiple is None and stop.absolute_u_per_l is None:
        raise ProtocolError(f"{r.prefix}: needs baseline_multiple or absolute_u_per_l")
    return stop


def _grade(r: _Reader, name: str) -> int:
    grade = r.whole(name)
    if grade > 4:
        raise ProtocolError(f"{r.key(name)}: CTCAE grades run 1 to 4 (got {grade})")
    return grade


def _cholestatic(r: _Reader | None) -> Cholestatic | None:
    if r is None:
        return None
    return Cholestatic(
        alp_min_grade=_grade(r, "alp_min_grade"),
        ggt_min_grade=_grade(r, "ggt_min_grade"),
        bilirubin_min_grade=_grade(r, "bilirubin_min_grade"),
    )


def _schedule(r: _Reader) -> Schedule:
    clock = r.text("clock")
    if clock not in ("restart", "dose_change"):
        raise ProtocolError(f"schedule.clock: must be 'restart' or 'dose_change', got {clock!r}")
    r.seen.add("rows")
    raw_rows = r.data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise ProtocolError("schedule.rows: needs at least one [[schedule.rows]] entry")
    rows: list[ScheduleRow] = []
    for i, raw in enumerate(raw_rows):
        if not isinstance(raw, dict):
            raise ProtocolError(f"schedule.rows[{i}]: must be a table")
        rr = r.child(raw, f"schedule.rows[{i}]")
        row = ScheduleRow(
            from_day=rr.whole("from_day", minimum=0),
            gap_days=rr.whole("gap_days"),
            grace_days=rr.whole("grace_days", minimum=0),
            stable_gap_days=rr.opt_int("stable_gap_days"),
            stable_grace_days=(
                rr.whole("stable_grace_days", minimum=0) if rr.has("stable_grace_days") else None
            ),
        )
        if (row.stable_gap_days is None) != (row.stable_grace_days is None):
            raise ProtocolError(
                f"schedule.rows[{i}]: stable_gap_days and stable_grace_days go together"
            )
        if rows and row.from_day <= rows[-1].from_day:
            raise ProtocolError(
                f"schedule.rows[{i}].from_day: must be greater than the row before "
                f"({row.from_day} <= {rows[-1].from_day})"
            )
        rows.append(row)
    if rows[0].from_day != 0:
        raise ProtocolError("schedule.rows[0].from_day: the first row must start at day 0")
    sched = Schedule(
        clock=clock,
        rows=tuple(rows),
        stable_window_days=r.opt_int("stable_window_days"),
        post_increase_window_days=r.opt_int("post_increase_window_days"),
        post_increase_max_gap_days=r.opt_int("post_increase_max_gap_days"),
        post_increase_grace_days=(
            r.whole("post_increase_grace_days", minimum=0)
            if r.has("post_increase_grace_days")
            else None
        ),
    )
    if any(row.stable_gap_days for row in rows) and sched.stable_window_days is None:
        raise ProtocolError("schedule.stable_window_days: required when a row has stable_gap_days")
    post = (
        sched.post_increase_window_days,
        sched.post_increase_max_gap_days,
        sched.post_increase_grace_days,
    )
    if any(v is not None for v in post) and any(v is None for v in post):
        raise ProtocolError(
            "schedule.post_increase_window_days: post_increase_window_days, "
            "post_increase_max_gap_days and post_increase_grace_days go together"
        )
    return sched


def parse_protocol(data: Mapping[str, Any], path: str = "") -> Protocol:
    """Build a Protocol from parsed TOML, refusing anything malformed or inconsistent."""
    root = _Reader(data, "")
    prof = root.req_table("profile")
    appr = root.req_table("approval")
    dos = root.req_table("dosing")
    sym = root.req_table("symptoms")
    stop = root.req_table("stop")
    warn = root.req_table("warn")
    grad = root.req_table("grading")
    pat = root.req_table("pattern")
    hys = root.req_table("hys_law")
    uln = root.req_table("default_uln")
    labs = root.req_table("labs")
    msgs = root.req_table("messages")
    pgx = root.req_table("pharmacogenomics")

    status = appr.text("status")
    if status not in ("approved", "unapproved"):
        raise ProtocolError(f"approval.status: must be 'approved' or 'unapproved', got {status!r}")
    approval = Approval(
        status=status,
        approved_by=appr.text("approved_by", default=""),
        approved_on=appr.text("approved_on", default=""),
        note=appr.text("note", default=""),
    )
    if status == "approved" and not (approval.approved_by and approval.approved_on):
        raise ProtocolError("approval.approved_by: an approved profile names who and when")

    dosing = Dosing(
        start_dose_mg=dos.num("start_dose_mg"),
        step_mg=dos.num("step_mg"),
        step_interval_min_days=dos.whole("step_interval_min_days"),
        step_interval_max_days=dos.whole("step_interval_max_days"),
        max_mg_per_kg=dos.num("max_mg_per_kg"),
        below_prior_toxic_dose=dos.flag("below_prior_toxic_dose"),
    )
    if dosing.step_interval_max_days < dosing.step_interval_min_days:
        raise ProtocolError(
            "dosing.step_interval_max_days: must not be below step_interval_min_days"
        )

    symptoms = Symptoms(
        names=sym.str_list("names"),
        active_days=sym.whole("active_days"),
        reevaluate_panel_within_days=sym.whole("reevaluate_panel_within_days", minimum=0),
    )
    if not symptoms.names or "resolved" in symptoms.names:
        raise ProtocolError("symptoms.names: a non-empty list, without the word 'resolved'")

    bili = stop.table("bilirubin", optional=True)
    grade4 = stop.table("grade4", optional=True)
    stops = Stop(
        transaminase=_transaminase_stop(stop.table("transaminase", optional=True)),
        transaminase_symptomatic=_transaminase_stop(
            stop.table("transaminase_symptomatic", optional=True)
        ),
        bilirubin=(
            BilirubinStop(
                uln_multiple=bili.num("uln_multiple"),
                inclusive=bili.comparison(),
                transaminase_above_uln_multiple=bili.num("transaminase_above_uln_multiple"),
            )
            if bili is not None
            else None
        ),
        grade4=grade4.flag("enabled") if grade4 is not None else False,
    )
    if stops.transaminase is None and stops.transaminase_symptomatic is None:
        raise ProtocolError(
            "stop.transaminase: a profile needs at least one transaminase stop line"
        )
    if (
        stops.transaminase is not None
        and stops.transaminase_symptomatic is not None
        and stops.transaminase.absolute_u_per_l is not None
        and stops.transaminase_symptomatic.absolute_u_per_l is not None
        and stops.transaminase_symptomatic.absolute_u_per_l > stops.transaminase.absolute_u_per_l
    ):
        raise ProtocolError(
            "stop.transaminase_symptomatic.absolute_u_per_l: must not be above "
            "stop.transaminase.absolute_u_per_l (symptoms lower the line, never raise it)"
        )

    low, high = warn.num_list("repeat_lfts_within_days", 2)
    if low > high:
        raise ProtocolError("warn.repeat_lfts_within_days: [min, max] with min <= max")
    warn_cfg = Warn(
        transaminase_min_grade=_grade(warn, "transaminase_min_grade"),
        repeat_lfts_within_days=(int(low), int(high)),
        repeat_grace_days=warn.whole("repeat_grace_days", minimum=0),
        urgent_within_hours=warn.whole("urgent_within_hours"),
        urgent_grace_hours=warn.whole("urgent_grace_hours", minimum=0),
        cholestatic=_cholestatic(warn.table("cholestatic", optional=True)),
    )

    grading: dict[str, GradeBounds] = {}
    for analyte in ANALYTES:
        g = grad.req_table(analyte)
        bounds_uln = g.num_list("uln", 4)
        bounds_base = g.num_list("baseline", 4)
        for name, bounds in (("uln", bounds_uln), ("baseline", bounds_base)):
            if any(b <= 0 for b in bounds) or list(bounds) != sorted(bounds):
                raise ProtocolError(f"grading.{analyte}.{name}: positive and increasing")
        grading[analyte] = GradeBounds(
            uln=(bounds_uln[0], bounds_uln[1], bounds_uln[2], bounds_uln[3]),
            baseline=(bounds_base[0], bounds_base[1], bounds_base[2], bounds_base[3]),
        )

    pattern = Pattern(
        hepatocellular_min_r=pat.num("hepatocellular_min_r"),
        cholestatic_max_r=pat.num("cholestatic_max_r"),
    )
    if pattern.cholestatic_max_r >= pattern.hepatocellular_min_r:
        raise ProtocolError("pattern.cholestatic_max_r: must be below hepatocellular_min_r")

    pharmacogenomics = Pharmacogenomics(
        poor_escalation_reminders=pgx.flag("poor_escalation_reminders"),
        intermediate_max_mg_per_kg=pgx.num("intermediate_max_mg_per_kg"),
        nudt15_unknown_alert=pgx.flag("nudt15_unknown_alert"),
    )
    if pharmacogenomics.intermediate_max_mg_per_kg > dosing.max_mg_per_kg:
        raise ProtocolError(
            "pharmacogenomics.intermediate_max_mg_per_kg: must not be above "
            "dosing.max_mg_per_kg (a reduced cap)"
        )

    protocol = Protocol(
        id=prof.text("id"),
        version=prof.text("version"),
        title=prof.text("title"),
        drug=prof.text("drug"),
        sources=prof.str_list("sources"),
        approval=approval,
        dosing=dosing,
        symptoms=symptoms,
        stop=stops,
        warn=warn_cfg,
        grading=grading,
        pattern=pattern,
        hys_law=HysLaw(
            transaminase_uln_multiple=hys.num("transaminase_uln_multiple"),
            bilirubin_uln_multiple=hys.num("bilirubin_uln_multiple"),
            alp_below_uln_multiple=hys.num("alp_below_uln_multiple"),
        ),
        default_uln={a: uln.num(a) for a in ANALYTES},
        combine_within_hours=labs.whole("combine_within_hours", minimum=0),
        preliminary_results_count=labs.flag("preliminary_results_count"),
        schedule=_schedule(root.req_table("schedule")),
        alternatives=msgs.text("alternatives"),
        increase_note=msgs.text("increase_note"),
        pharmacogenomics=pharmacogenomics,
        cholestatic_note=msgs.text("cholestatic_note"),
        poor_metaboliser_advice=msgs.text("poor_metaboliser_advice"),
        path=path,
    )
    root.refuse_unknown()
    return protocol


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate one profile file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProtocolError(f"{p}: no such protocol file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{p}: not valid TOML ({exc})") from exc
    try:
        return parse_protocol(data, str(p))
    except ProtocolError as exc:
        raise ProtocolError(f"{p.name}: {exc}") from exc


def load_protocols(directory: str | Path) -> dict[str, Protocol]:
    """Every profile in a directory, keyed by profile id; duplicate ids are refused."""
    found: dict[str, Protocol] = {}
    for file in sorted(Path(directory).glob("*.toml")):
        proto = load_protocol(file)
        if proto.id in found:
            raise ProtocolError(f"{file.name}: profile.id {proto.id!r} is used twice")
        found[proto.id] = proto
    if not found:
        raise ProtocolError(f"{directory}: no protocol profiles (*.toml) found")
    return found
