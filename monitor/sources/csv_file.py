"""CSV exports of liver results: the whole file is taken, or none of it.

A person made or exported the file, so a person can fix it: every bad cell is
reported by row and column (row 1 is the header, so the first result is row 2)
and nothing is taken until the file reads cleanly. Taking the good rows and
leaving the bad would leave a timeline that looks complete and is not.

Columns (header names are case-insensitive, other columns are ignored):

- ``patient_id`` (required), ``id_system`` (optional: the issuing authority)
- ``analyte`` (ALT, AST, ALP, GGT, bilirubin, or a name in `[names]` of the mapping)
  or ``code`` with optional ``code_system`` (default LOINC). A code that is not a
  liver test is skipped; a name that is not one is an error.
- ``value``, ``unit``, ``observed_at`` (ISO 8601; no offset = `assume_tz`)
- optional ``reference_range`` (``7-56``, ``<45``) and/or ``uln``, ``status``
  (final, corrected, preliminary; default final), ``abnormal_flag``
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

import structlog

from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME, UnitError
from monitor.sources.mapping import Mapping, default_mapping
from monitor.sources.model import (
    Identifier,
    LabMessage,
    Observation,
    ParseError,
    PatientRef,
    Problem,
    SourceCode,
    Status,
)
from monitor.sources.values import (
    parse_iso_datetime,
    parse_measurement,
    parse_number,
    parse_range_high,
    resolve_tz,
)

log = structlog.get_logger(__name__)

REQUIRED = ("patient_id", "value", "unit", "observed_at")
KNOWN = (
    *REQUIRED,
    "id_system",
    "analyte",
    "code",
    "code_system",
    "reference_range",
    "uln",
    "status",
    "abnormal_flag",
)
_STATUS: dict[str, Status] = {
    "": "final",
    "final": "final",
    "f": "final",
    "corrected": "corrected",
    "amended": "corrected",
    "c": "corrected",
    "preliminary": "preliminary",
    "p": "preliminary",
}
_LOINC = "http://loinc.org"
_RANGE = "reference_range"
_NO_CODE = SourceCode("", "")


@dataclass(frozen=True)
class CsvResult:
    """Either the messages of the file, or the problems that stop it (never both)."""

    messages: tuple[LabMessage, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Row:
    number: int
    cells: dict[str, str]  # as written: a patient's rows are stored as they came

    def __getitem__(self, column: str) -> str:
        return self.cells.get(column, "").strip()


@dataclass
class _Seen:
    """What a file repeats on row after row, read once per file: a draw's time on
    each of its analytes' rows, the analyte names, the codes (one shared `SourceCode`
    each, not one a row)."""

    mapping: Mapping
    tz: tzinfo
    times: dict[str, datetime]
    names: dict[str, str | None]
    codes: dict[tuple[str, str], SourceCode]

    def time(self, text: str) -> datetime:
        """`parse_iso_datetime`, remembered when it reads (a bad one raises each time)."""
        hit = self.times.get(text)
        if hit is None:
            hit = self.times[text] = parse_iso_datetime(text, self.tz)
        return hit

    def analyte_named(self, name: str) -> str | None:
        if name not in self.names:
            self.names[name] = self.mapping.analyte_named(name)
        return self.names[name]

    def code(self, system: str, code: str) -> SourceCode:
        key = (system, code)
        hit = self.codes.get(key)
        if hit is None:
            hit = self.codes[key] = SourceCode(system, code)
        return hit


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _rows(text: str, problems: list[Problem]) -> tuple[list[str], list[_Row]]:
    text = text.lstrip("\ufeff")
    first = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first))
    header: list[str] = []
    rows: list[_Row] = []
    number = 0
    try:
        for cells in reader:
            number += 1
            if number == 1:
                header = [" ".join(c.strip().lower().split()).replace(" ", "_") for c in cells]
                continue
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
                problems.append(
                    Problem(
                        f"row {number}",
                        f"{len(cells)} cells but the header has {len(header)} columns",
                    )
                )
                continue
            rows.append(_Row(number, dict(zip(header, cells, strict=False))))
    except csv.Error as exc:
        problems.append(Problem(f"row {number + 1}", f"not valid CSV ({exc})"))
    return header, rows


def _raw_of(header: list[str], rows: list[_Row]) -> str:
    """One patient's rows under the header: what that message stores as its raw text,
    so a file naming 2,000 patients is stored once in total, not once per patient."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.cells.get(c, "") for c in header])
    return out.getvalue()


def read_csv(
    text: str,
    *,
    source_name: str = "csv",
    mapping: Mapping | None = None,
    assume_tz: str = "UTC",
) -> CsvResult:
    """Read a CSV export; `source_name` (e.g. the file name) prefixes the message ids."""
    mapping = mapping or default_mapping()
    tz = resolve_tz(assume_tz)
    problems: list[Problem] = []
    header, rows = _rows(text, problems)
    if not header or not any(header):
        return CsvResult((), (Problem("row 1", "the file has no header row"),))
    missing = [c for c in REQUIRED if c not in header]
    if "analyte" not in header and "code" not in header:
        missing.append("analyte (or code)")
    if missing:
        problems.append(Problem("row 1", f"missing column(s): {', '.join(missing)}"))
    repeated = sorted({c for c in header if c and header.count(c) > 1 and c in KNOWN})
    if repeated:
        problems.append(Problem("row 1", f"column(s) named twice: {', '.join(repeated)}"))
    if problems:
        return CsvResult((), tuple(problems))
    if not rows:
        return CsvResult((), (Problem("file", "no result rows under the header"),))

    groups: dict[tuple[str, str], list[Observation]] = {}
    first_row: dict[tuple[str, str], int] = {}
    group_rows: dict[tuple[str, str], list[_Row]] = {}
    seen: dict[tuple[str, str, str, datetime], int] = {}
    repeated_cells = _Seen(mapping, tz, {}, {}, {})
    for row in rows:
        read = _read_row(row, repeated_cells, problems)
        if read is None:
            continue
        key, obs = read
        dup = (*key, obs.analyte, obs.observed_at)
        if dup in seen:
            problems.append(
                Problem(
                    f"row {row.number}", f"repeats row {seen[dup]} (same patient, test and time)"
                )
            )
            continue
        seen[dup] = row.number
        groups.setdefault(key, []).append(obs)
        group_rows.setdefault(key, []).append(row)
        first_row.setdefault(key, row.number)
    if problems:
        log.info("csv.rejected", source=source_name, problems=len(problems))
        return CsvResult((), tuple(problems))
    if not groups:
        return CsvResult((), (Problem("file", "no liver test result in the file"),))
    messages = tuple(
        LabMessage(
            source="csv",
            message_id=f"{source_name}:row {first_row[key]}",
            patient=PatientRef(identifiers=(Identifier(system=key[0], value=key[1]),)),
            observations=tuple(observations),
            sender=source_name,
            raw=_raw_of(header, group_rows[key]),
        )
        for key, observations in groups.items()
    )
    log.info(
        "csv.parsed",
        source=source_name,
        messages=len(messages),
        observations=sum(len(m.observations) for m in messages),
    )
    return CsvResult(messages, ())


def _read_row(
    row: _Row, seen: _Seen, problems: list[Problem]
) -> tuple[tuple[str, str], Observation] | None:
    """One row as (patient key, observation); None when skipped or wrong (then reported)."""
    n = row.number
    before = len(problems)
    mapping = seen.mapping
    cells = row.cells

    def cell(column: str) -> str:
        return cells.get(column, "").strip()

    def bad(column: str, reason: str) -> None:
        problems.append(Problem(f"row {n}, column {column}", reason))

    patient_id = cell("patient_id")
    if not patient_id:
        bad("patient_id", "empty")
    analyte: str | None = None
    code = _NO_CODE
    named, coded = cell("analyte"), cell("code")
    if named:
        analyte = seen.analyte_named(named)
        code = seen.code("csv", named)
        if analyte is None:
            bad(
                "analyte",
                f"{named!r} is not a monitored liver test (ALT, AST, ALP, GGT, bilirubin)",
            )
    elif coded:
        system = cell("code_system") or _LOINC
        analyte = mapping.analyte_for(system, coded)
        code = seen.code(system, coded)
        if analyte is None:
            if mapping.looks_like_liver(coded) and not mapping.is_not_monitored(system, coded):
                bad(
                    "code",
                    f"{coded!r} looks like a liver test but is not mapped "
                    "(add it to config/mapping.toml)",
                )
            elif len(problems) == before:
                return None  # a test this monitor does not follow
    else:
        bad("analyte", "empty (give analyte or code)")

    number: float | None = None
    comparator: str | None = None
    text = cell("value")
    try:
        number, comparator = parse_measurement(text)
    except ValueError as exc:
        bad("value", str(exc) if text else "empty")

    value: float | None = None
    unit = cell("unit")
    if not unit:
        bad("unit", "empty; a unit is never guessed")
    elif analyte is not None and number is not None:
        try:
            value = mapping.to_canonical(analyte, number, unit)
        except UnitError:
            bad("unit", f"unknown unit {unit!r} for {DISPLAY_NAME[analyte]}")

    observed_at: datetime | None = None
    try:
        observed_at = seen.time(cell("observed_at"))
    except ValueError as exc:
        bad("observed_at", str(exc))

    uln = _uln(row, analyte, unit, mapping, bad) if ("uln" in cells or _RANGE in cells) else None
    status_text = cell("status")
    status = _STATUS.get(status_text.lower())
    if status is None:
        bad("status", f"{status_text!r} is not final, corrected or preliminary")

    if len(problems) > before or analyte is None or value is None or observed_at is None:
        return None
    assert status is not None
    return (cell("id_system"), patient_id), Observation(
        analyte=analyte,
        value=value,
        unit=CANONICAL_UNIT[analyte],
        original_value=text,
        original_unit=unit,
        uln=uln,
        observed_at=observed_at,
        observed_at_source="observed_at",
        status=status,
        code=code,
        abnormal_flag=cell("abnormal_flag") or None,
        comparator=comparator,
        reference_range=cell(_RANGE) or None,
        source_ref=f"row {n}",
    )


def _uln(
    row: _Row, analyte: str | None, unit: str, mapping: Mapping, bad: Callable[[str, str], None]
) -> float | None:
    """The ULN from `uln` or `reference_range`, in the row's unit, converted."""
    from_range: float | None = None
    if row["reference_range"]:
        high = parse_range_high(row["reference_range"])
        if not high.readable:
            bad("reference_range", f"{row['reference_range']!r} is not a range (e.g. 7-56, <45)")
            return None
        from_range = high.high
    from_column: float | None = None
    if row["uln"]:
        try:
            from_column = parse_number(row["uln"])
        except ValueError as exc:
            bad("uln", str(exc))
            return None
        if from_column <= 0:
            bad("uln", f"{row['uln']!r} is not above zero")
            return None
    if from_range is not None and from_column is not None and from_range != from_column:
        bad("uln", f"{row['uln']!r} disagrees with reference_range {row['reference_range']!r}")
        return None
    high_value = from_column if from_column is not None else from_range
    if high_value is None or analyte is None or not unit:
        return None
    try:
        return mapping.to_canonical(analyte, high_value, unit)
    except UnitError:
        return None  # the unit problem is already reported


def parse_csv(
    text: str,
    *,
    source_name: str = "csv",
    mapping: Mapping | None = None,
    assume_tz: str = "UTC",
) -> list[LabMessage]:
    """`read_csv` for callers that want messages or a `ParseError` naming every bad cell."""
    result = read_csv(text, source_name=source_name, mapping=mapping, assume_tz=assume_tz)
    if not result.ok:
        count = len(result.problems)
        first = "; ".join(str(p) for p in result.problems[:3])
        more = f" (and {count - 3} more)" if count > 3 else ""
        raise ParseError(f"the CSV file was not taken: {first}{more}", result.problems)
    return list(result.messages)
