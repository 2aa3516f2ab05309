"""HL7 v2 results: one OBR group's OBX segments into liver `Observation`s, or the
`Problem` that says why a value is held, ignored or quarantined (see `hl7v2`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME, UnitError
from monitor.sources.hl7_text import Segment
from monitor.sources.mapping import Mapping
from monitor.sources.model import (
    Effect,
    Observation,
    Problem,
    SourceCode,
    Status,
    TimeSource,
)
from monitor.sources.values import (
    parse_hl7_ts,
    parse_measurement,
    parse_number,
    parse_range_high,
)

_STATUS: dict[str, Status] = {
    "F": "final",
    "C": "corrected",
    "A": "corrected",  # "amended", v2.7+
    "P": "preliminary",
    "R": "preliminary",  # entered, not verified
    "S": "preliminary",  # partial
}
_STATUS_QUARANTINE = {
    "W": "the lab marks this result as wrong (e.g. sent for the wrong patient); "
    "a person must check what was taken in before",
    "D": "the lab deletes this result; a person must check what was taken in before",
}
# Ignored by rule: the lab says the line carries no result (README, "Every value
# accounted for"). U only while OBX-5 is empty: a U with a value is held.
_STATUS_IGNORED = {
    "X": "the lab could not obtain a result",
    "I": "the result is still pending",
    "N": "the test was not asked for",
    "O": "the OBX is an order detail, not a result",
    "U": "the status changes to final without a value",
}


@dataclass
class Group:
    """One OBR and the OBX that follow it (group 0: OBX before any OBR)."""

    label: str
    obr_time: str  # OBR-7, observation (collection) time
    obr_end: str  # OBR-8, observation end: where some analyzers put the only time
    obx: list[Segment] = field(default_factory=list)


@dataclass
class _Candidate:
    analyte: str
    set_id: str
    location: str
    segment: Segment
    code: SourceCode
    sub_id: str


@dataclass
class _Companions:
    uln: tuple[str, str] | None = None  # (OBX-5 raw, location)
    date: tuple[str, str] | None = None


def parse_time(raw: str, label: str, tz: tzinfo) -> tuple[datetime | None, str | None]:
    """(time, None), (None, reason) when unreadable, or (None, None) when empty."""
    if not raw.strip():
        return None, None
    try:
        return parse_hl7_ts(raw, tz), None
    except ValueError as exc:
        return None, f"{label} {exc}"


_Triplet = tuple[str, str, str, int]  # code, text, coding system, OBX-3 component


def _triplets(obx: Segment) -> list[_Triplet]:
    """OBX-3 as its identifier (components 1-3) and alternate identifier (4-6)."""
    c = obx.comps(3, 6)
    return [(c[0], c[1], c[2], 1), (c[3], c[4], c[5], 4)]


def _mapped(triplets: list[_Triplet], sending_app: str, mapping: Mapping) -> dict[str, SourceCode]:
    """The analytes OBX-3 names (normally one), each with the code that named it."""
    found: dict[str, SourceCode] = {}
    for code, text, system, component in triplets:
        analyte = mapping.analyte_for(
            system, code, component=component, sending_application=sending_app
        )
        if analyte and analyte not in found:
            if component == 1 and (not text or mapping.is_loinc(text)) and triplets[1][1]:
                text = triplets[1][1]  # LabCorp style: the text says "LOINC", the name is later
            found[analyte] = SourceCode(system=system, code=code, display=text)
    return found


def _named_by(triplets: list[_Triplet], mapping: Mapping) -> _Triplet:
    """The OBX-3 triplet a held value is known by: the first that reads as a liver test,
    else the first with a code."""
    for triplet in triplets:
        if triplet[0] and mapping.looks_like_liver(triplet[0], triplet[1]):
            return triplet
    return next((t for t in triplets if t[0]), triplets[0])


def read_group(
    group: Group,
    several_obr: bool,
    msh_time: str,
    sending_app: str,
    mapping: Mapping,
    tz: tzinfo,
    problems: list[Problem],
) -> list[Observation]:
    candidates: list[_Candidate] = []
    companions: dict[str, _Companions] = {}
    # held before they have an analyte: (OBX, location, reason, the triplet it is known by)
    unnamed: list[tuple[Segment, str, str, _Triplet]] = []
    for position, obx in enumerate(group.obx, start=1):
        set_id = obx.comp(1) or str(position)
        location = f"OBR {group.label} OBX {set_id}" if several_obr else f"OBX {set_id}"
        triplets = _triplets(obx)
        mapped = _mapped(triplets, sending_app, mapping)
        codes = [code for code, _, _, _ in triplets if code]
        sub_id = obx.comp(4)
        if len(mapped) > 1:
            reason = (
                f"code {obx.raw(3)!r} names two different liver "
                "tests in its identifier and alternate identifier"
            )
            unnamed.append((obx, location, reason, _named_by(triplets, mapping)))
        elif mapped:
            ((analyte, code),) = mapped.items()
            candidates.append(_Candidate(analyte, set_id, location, obx, code, sub_id))
        elif any(mapping.is_companion_uln(c) for c in codes):
            if sub_id:
                companions.setdefault(sub_id, _Companions()).uln = (obx.raw(5), location)
        elif any(mapping.is_companion_date(c) for c in codes):
            if sub_id:
                companions.setdefault(sub_id, _Companions()).date = (obx.raw(5), location)
        elif any(
            mapping.is_not_monitored(
                system, code, component=component, sending_application=sending_app
            )
            for code, _, system, component in triplets
            if code
        ):
            continue
        elif mapping.looks_like_liver(*(t for code, text, _, _ in triplets for t in (code, text))):
            reason = (
                f"code {obx.raw(3)!r} looks like a liver test "
                "but is not mapped (add it to config/mapping.toml)"
            )
            unnamed.append((obx, location, reason, _named_by(triplets, mapping)))
    for obx, location, reason, (sent_code, sent_text, system, _) in unnamed:
        label = sent_text or sent_code or obx.raw(3)
        when, _ = _when(obx, group, msh_time, companions.get(obx.comp(4)), tz, label, location)
        problems.append(
            Problem(
                location,
                reason,
                "held",
                label=label,
                at=when[0] if not isinstance(when, str) else None,
                code=_code_token(system, sent_code) if sent_code else "",
            )
        )

    kept: dict[str, _Candidate] = {}
    seen: dict[str, list[_Candidate]] = {}
    for cand in candidates:
        kept[cand.analyte] = cand
        seen.setdefault(cand.analyte, []).append(cand)
    for analyte, repeats in seen.items():
        if len(repeats) > 1:
            listed = ", ".join(
                f"OBX {r.set_id}: {r.segment.text(r.segment.raw(5))} {r.segment.comp(6)}".rstrip()
                for r in repeats
            )
            last = repeats[-1]
            where = f" in OBR {group.label}" if group.label else ""
            problems.append(
                Problem(
                    last.location,
                    f"{DISPLAY_NAME[analyte]} appears "
                    f"{len(repeats)} times{where} ({listed}); the last one "
                    "was kept",
                    "note",
                )
            )

    out: list[Observation] = []
    for cand in candidates:
        if kept[cand.analyte] is not cand:
            continue
        obs = _observation(
            cand, group, msh_time, companions.get(cand.sub_id), mapping, tz, problems
        )
        if obs is not None:
            out.append(obs)
    return out


def _value(cand: _Candidate) -> tuple[float, str | None, str] | str:
    """(number, comparator, text as sent), or the reason it is not a number."""
    obx = cand.segment
    name = DISPLAY_NAME[cand.analyte]
    value_type = obx.comp(2).upper()
    reps = [r for r in obx.reps(5) if r.strip()]
    if not reps:
        return f"{name} has no value (OBX-5 is empty)"
    if len(reps) > 1:
        return f"{name} has {len(reps)} values in OBX-5; one is expected"
    raw = reps[0]
    shown = obx.text(raw)
    if value_type == "SN":
        parts = [obx.text(p).strip() for p in obx.components(raw)] + ["", "", "", ""]
        comparator, number, separator, second = parts[:4]
        if separator or second:
            return f"{name} value {shown!r} is a range or ratio, not a single number"
        if not number:
            return f"{name} value {shown!r} is not a number"
        if comparator not in ("", "=", "<", ">", "<=", ">=", "<>"):
            return f"{name} value {shown!r} has an unknown comparator {comparator!r}"
        if comparator == "<>":
            return f"{name} value {shown!r} says 'not equal', which is not a value"
        try:
            value = parse_number(number)
        except ValueError:
            return f"{name} value {shown!r} is not a number"
        if value < 0:
            return f"{name} value {shown!r} is negative"
        return value, (comparator if comparator not in ("", "=") else None), shown
    if value_type not in ("NM", "ST", ""):
        return f"{name} value has type {value_type!r}, not a number (NM or SN)"
    try:
        value, bound = parse_measurement(shown)
    except ValueError as exc:
        return f"{name} value {exc}"
    return value, bound, shown


def _shown(number: float, comparator: str | None) -> str:
    return f"{comparator or ''}{number:g}"


def _code_token(system: str, code: str) -> str:
    """The sender's code as ``system|code`` (FHIR token syntax), e.g. ``L|XAST``."""
    return f"{system}|{code}"


def _when(
    obx: Segment,
    group: Group,
    msh_time: str,
    companions: _Companions | None,
    tz: tzinfo,
    name: str,
    location: str,
) -> tuple[tuple[datetime, TimeSource] | str, list[Problem]]:
    """The draw time of one OBX and where it came from, or the reason it cannot be read.

    The first source that is not empty decides (an unreadable OBX-14 or OBR time is
    not replaced by a guess); an unreadable companion date only adds a note. Returns
    the notes separately so that a held value does not carry them.
    """
    notes: list[Problem] = []
    moment, reason = parse_time(obx.comp(14), "OBX-14", tz)
    if reason:
        return f"{name} {reason}", notes
    if moment is not None:
        return (moment, "OBX-14"), notes
    if companions is not None and companions.date is not None:
        raw_date, date_loc = companions.date
        moment, reason = parse_time(obx.text(raw_date), "test date", tz)
        if reason:
            notes.append(
                Problem(
                    date_loc, f"{name} {reason}; the OBR or message time is used instead", "note"
                )
            )
        elif moment is not None:
            return (moment, "OBX-4 group"), notes
    obr: tuple[tuple[str, TimeSource], ...] = ((group.obr_time, "OBR-7"), (group.obr_end, "OBR-8"))
    for raw_time, label in obr:
        moment, reason = parse_time(raw_time, label, tz)
        if reason:
            return f"{name} {reason}", notes
        if moment is not None:
            return (moment, label), notes
    moment, _ = parse_time(msh_time, "MSH-7", tz)
    if moment is None:
        return (
            f"{name} has no readable time (OBX-14, OBR-7, OBR-8, MSH-7 are empty or unreadable)",
            notes,
        )
    return (moment, "MSH-7"), notes


def _observation(
    cand: _Candidate,
    group: Group,
    msh_time: str,
    companions: _Companions | None,
    mapping: Mapping,
    tz: tzinfo,
    problems: list[Problem],
) -> Observation | None:
    obx = cand.segment
    loc = cand.location
    name = DISPLAY_NAME[cand.analyte]
    when, time_notes = _when(obx, group, msh_time, companions, tz, name, loc)
    at = when[0] if not isinstance(when, str) else None
    token = _code_token(cand.code.system, cand.code.code)

    def hold(reason: str, effect: Effect = "held") -> None:
        problems.append(Problem(loc, reason, effect, label=cand.analyte, at=at, code=token))

    status_code = obx.comp(11).upper()
    if status_code in _STATUS_QUARANTINE:
        hold(f"{name} status {status_code}: {_STATUS_QUARANTINE[status_code]}", "quarantine")
        return None
    if status_code not in _STATUS:
        has_value = any(r.strip() for r in obx.reps(5))
        if status_code in _STATUS_IGNORED and not (status_code == "U" and has_value):
            hold(f"{name} status {status_code}: {_STATUS_IGNORED[status_code]}", "ignored")
        elif status_code == "U":
            hold(f"{name} status U (final without a value) carries a value; it is not judged")
        elif not status_code:
            hold(f"{name} has no result status (OBX-11 is empty); it is not taken")
        else:
            hold(f"{name} status {status_code!r} is not one that is taken (F, C, P)")
        return None

    read = _value(cand)
    if isinstance(read, str):
        hold(read)
        return None
    number, comparator, shown = read

    unit_text = obx.comp(6, 1) or obx.comp(6, 2)
    unit_raw = obx.text(obx.raw(6)).strip()
    if not unit_text:
        hold(f"{name} value {_shown(number, comparator)} has no unit; a unit is never guessed")
        return None
    try:
        value = mapping.to_canonical(cand.analyte, number, unit_text)
    except UnitError:
        hold(f"unknown unit {unit_text!r} for {name}")
        return None

    range_text = obx.text(obx.raw(7)).strip()
    uln: float | None = None
    high = parse_range_high(range_text)
    if not high.readable:
        problems.append(
            Problem(
                loc,
                f"{name} reference range {range_text!r} could not be read; no ULN taken",
                "note",
            )
        )
    elif high.high is not None:
        uln = mapping.to_canonical(cand.analyte, high.high, unit_text)
    elif not range_text and companions is not None and companions.uln is not None:
        uln = _companion_uln(cand, companions.uln, unit_text, mapping, problems)

    problems.extend(time_notes)
    if isinstance(when, str):
        hold(when)
        return None
    observed_at, time_source = when

    flag = obx.comp(8)
    return Observation(
        analyte=cand.analyte,
        value=value,
        unit=CANONICAL_UNIT[cand.analyte],
        original_value=shown,
        original_unit=unit_raw,
        uln=uln,
        observed_at=observed_at,
        observed_at_source=time_source,
        status=_STATUS[status_code],
        code=cand.code,
        abnormal_flag=flag or None,
        comparator=comparator,
        reference_range=range_text or None,
        source_ref=loc,
    )


def _companion_uln(
    cand: _Candidate,
    companion: tuple[str, str],
    unit_text: str,
    mapping: Mapping,
    problems: list[Problem],
) -> float | None:
    """The ULN sent as its own OBX (CDC MMG ``INV827``), in the result's unit."""
    raw, location = companion
    obx = cand.segment
    parts = [obx.text(p).strip() for p in obx.components(raw)]
    text = parts[1] if len(parts) > 1 else parts[0] if parts else ""
    name = DISPLAY_NAME[cand.analyte]
    try:
        high = parse_number(text)
    except ValueError:
        problems.append(
            Problem(
                location,
                f"{name} upper limit of normal {obx.text(raw)!r} is not a number; no ULN taken",
                "note",
            )
        )
        return None
    if high <= 0:
        problems.append(
            Problem(
                location,
                f"{name} upper limit of normal {text!r} is not above zero; no ULN taken",
                "note",
            )
        )
        return None
    return mapping.to_canonical(cand.analyte, high, unit_text)
