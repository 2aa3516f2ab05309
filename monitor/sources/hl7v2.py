"""HL7 v2 lab results (ORU^R01, v2.3 to 2.5.1): parse, split batches, build ACKs.

`parse_message` reads one message into a `LabMessage`. It raises `ParseError`
only when the text is not an HL7 message at all; everything else (no patient, a
unit it does not know, a value that is not a number...) becomes a `Problem` whose
effect says whether the whole message is held or one value is (see
`monitor.sources.model`). Only liver results are read: sodium, CBC and the rest
are ignored, but an unmapped code that looks like a liver test is reported.

Per-problem decisions made here:

================================================  ===========
problem                                           effect
================================================  ===========
not an ORU^R01                                    quarantine
no PID, several PID, no identifier in PID-3/PID-2 quarantine
OBX-11 status W (wrong) or D (deleted)            quarantine
liver value not a number / SN ``=`` / a range     held
missing or unknown unit                           held
liver-looking code not in the mapping             held
OBX-11 empty or unknown, U with a value           held
observation time unreadable or absent everywhere  held
OBX-11 X, I, N, O, or U with an empty OBX-5       ignored
same analyte twice in one OBR                     note (the last is kept)
reference range unreadable                        note (no ULN)
MSH-11 ``T``/``D``, version not 2.3-2.5.1         note
================================================  ===========

A held or ignored value names itself: `Problem.label` is the analyte (``alt``,
``bilirubin``) or, for a code that is not mapped, the sender's text for it;
`Problem.code` is the sender's code as ``system|code`` (``L|XAST``); `Problem.at`
is its draw time when that can be read.

Times: OBX-14, else the date OBX tied by OBX-4 sub-ID (CDC notifications), else
OBR-7, else OBR-8 (observation end: the only time some analyzers send), else
MSH-7; the one used is recorded in `Observation.observed_at_source`. A time
with no offset is read in `assume_tz` (default UTC).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Literal

import hl7
import structlog

from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME, UnitError
from monitor.sources.limits import DEFAULT_LIMITS, ParseLimits, check_hl7
from monitor.sources.mapping import Mapping, default_mapping
from monitor.sources.model import (
    Effect,
    Identifier,
    LabMessage,
    Observation,
    ParseError,
    PatientRef,
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
    resolve_tz,
)

log = structlog.get_logger(__name__)

AckCode = Literal["AA", "AE", "AR"]
SUPPORTED_VERSIONS: tuple[str, ...] = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
_MLLP_CHARS = str.maketrans("", "", "\x0b\x1c")
_BATCH_SEGMENTS = ("FHS", "FTS", "BHS", "BTS")
_HL7_ERRORS = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
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


# --- text level ----------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Segments of a text whatever the separator (CR, LF, CRLF); blank lines dropped."""
    cleaned = text.translate(_MLLP_CHARS).lstrip("\ufeff")
    out = []
    for line in cleaned.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        if line.strip():
            out.append(line.lstrip())
    return out


def normalize(text: str) -> str:
    """One message with CR after every segment and no empty segments."""
    return "".join(line + "\r" for line in _lines(text))


def split_batch(text: str) -> list[str]:
    """The messages in a file: FHS/BHS batches, blank-line separated, or back to back.

    Batch header and trailer segments are dropped. Segments found before any MSH
    are returned as a chunk of their own, so that parsing it fails and it is
    quarantined instead of vanishing.
    """
    messages: list[list[str]] = []
    orphan: list[str] = []
    for line in _lines(text):
        tag = line[:3]
        if tag in _BATCH_SEGMENTS:
            continue
        if tag == "MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            orphan.append(line)
    chunks = ["".join(s + "\r" for s in m) for m in messages]
    if orphan:
        chunks.insert(0, "".join(s + "\r" for s in orphan))
    return chunks


def _check_header(text: str) -> tuple[str, str]:
    """The field separator and encoding characters, refused when unusable."""
    if not text.startswith("MSH") or len(text) < 8:
        raise ParseError("not an HL7 v2 message: it does not start with an MSH segment")
    sep = text[3]
    end = text.find(sep, 4)
    enc = text[4:end] if end != -1 else text[4:].split("\r", 1)[0]
    chars = sep + enc
    if (
        len(enc) not in (4, 5)
        or len(set(chars)) != len(chars)
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        raise ParseError(
            f"MSH-1/MSH-2: separators {chars!r} are not usable (expected e.g. '|^~\\&')"
        )
    return sep, enc


# --- field access --------------------------------------------------------------


class _Segment:
    """One segment's fields as raw text, split and unescaped with the message's separators."""

    def __init__(self, segment: hl7.Segment, message: hl7.Message) -> None:
        self._message = message
        self.fields: list[str] = [str(f) for f in segment]
        self.id = self.fields[0] if self.fields else ""
        seps = message.separators
        self._rep, self._comp, self._sub = seps[2], seps[3], seps[4]

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def reps(self, n: int) -> list[str]:
        return self.raw(n).split(self._rep)

    def components(self, raw: str) -> list[str]:
        return raw.split(self._comp)

    def subcomponents(self, raw: str) -> list[str]:
        return raw.split(self._sub)

    def text(self, raw: str) -> str:
        """A leaf value with escapes resolved; the HL7 null ``""`` reads as empty."""
        if raw == '""':
            return ""
        if self._message.esc not in raw:
            return raw
        try:
            return str(self._message.unescape(raw))
        except Exception:  # the library fails on some malformed escapes
            return raw

    def comp(self, n: int, c: int = 1, rep: int = 0) -> str:
        reps = self.reps(n)
        if rep >= len(reps):
            return ""
        comps = self.components(reps[rep])
        return self.text(comps[c - 1]).strip() if c - 1 < len(comps) else ""

    def comps(self, n: int, count: int, rep: int = 0) -> list[str]:
        return [self.comp(n, c, rep) for c in range(1, count + 1)]


def _read(text: str) -> list[_Segment]:
    _check_header(text)
    try:
        message = hl7.parse(text)
        segments = [_Segment(seg, message) for seg in message]
    except ParseError:
        raise
    except Exception as exc:  # python-hl7 raises assorted errors on malformed input
        raise ParseError(f"the HL7 message could not be read ({type(exc).__name__})") from exc
    if not segments or segments[0].id != "MSH":
        raise ParseError("not an HL7 v2 message: it does not start with an MSH segment")
    return segments


# --- parsing -------------------------------------------------------------------


@dataclass
class _Group:
    """One OBR and the OBX that follow it (group 0: OBX before any OBR)."""

    label: str
    obr_time: str  # OBR-7, observation (collection) time
    obr_end: str  # OBR-8, observation end: where some analyzers put the only time
    obx: list[_Segment] = field(default_factory=list)


@dataclass
class _Candidate:
    analyte: str
    set_id: str
    location: str
    segment: _Segment
    code: SourceCode
    sub_id: str


@dataclass
class _Companions:
    uln: tuple[str, str] | None = None  # (OBX-5 raw, location)
    date: tuple[str, str] | None = None


def _patient(pid: _Segment) -> tuple[Identifier, ...]:
    found: list[Identifier] = []
    for field_no in (3, 2):
        for rep in pid.reps(field_no):
            comps = pid.components(rep)
            value = pid.text(comps[0]).strip() if comps else ""
            if not value:
                continue
            authority = pid.subcomponents(comps[3]) if len(comps) > 3 else [""]
            names = [pid.text(s).strip() for s in authority]
            system = next((n for n in names[:2] if n), "")
            kind = pid.text(comps[4]).strip() if len(comps) > 4 else ""
            ident = Identifier(system=system, value=value, kind=kind)
            if not any(i.system == system and i.value == value for i in found):
                found.append(ident)
    return tuple(found)


def _time(raw: str, label: str, tz: tzinfo) -> tuple[datetime | None, str | None]:
    """(time, None), (None, reason) when unreadable, or (None, None) when empty."""
    if not raw.strip():
        return None, None
    try:
        return parse_hl7_ts(raw, tz), None
    except ValueError as exc:
        return None, f"{label} {exc}"


def parse_message(
    text: str,
    *,
    mapping: Mapping | None = None,
    assume_tz: str = "UTC",
    limits: ParseLimits = DEFAULT_LIMITS,
) -> LabMessage:
    """Read one ORU^R01 message; raise `ParseError` only when it is not HL7 at all, or
    when it is over one of `limits` (checked before the HL7 library sees it)."""
    mapping = mapping or default_mapping()
    tz = resolve_tz(assume_tz)
    lines = _lines(text)
    check_hl7(lines, limits)
    norm = "".join(line + "\r" for line in lines)
    segments = _read(norm)
    msh = segments[0]
    problems: list[Problem] = []

    sending_app = msh.comp(3)
    sender = "/".join(p for p in (sending_app, msh.comp(4)) if p)
    control_id = msh.comp(10)
    if control_id:
        message_id = control_id
    else:
        message_id = "sha256:" + hashlib.sha256(norm.encode("utf-8")).hexdigest()[:16]
        problems.append(
            Problem(
                "MSH-10",
                "the message control ID is empty; the message is known by a hash of its content",
                "note",
            )
        )
    msg_type = "^".join(p for p in msh.comps(9, 2) if p)
    if msh.comp(9, 1).upper() != "ORU" or msh.comp(9, 2).upper() != "R01":
        problems.append(
            Problem(
                "MSH-9", f"message type {msg_type or '(empty)'!r} is not a lab result (ORU^R01)"
            )
        )
    version = msh.comp(12)
    if version not in SUPPORTED_VERSIONS:
        problems.append(
            Problem(
                "MSH-12",
                f"HL7 version {version or '(empty)'!r} is not one "
                "this reader was built for (2.3 to 2.5.1); read as 2.5.1",
                "note",
            )
        )
    processing_id = msh.comp(11)
    if processing_id.upper() in ("T", "D"):
        meaning = "training/test" if processing_id.upper() == "T" else "debugging"
        problems.append(
            Problem(
                "MSH-11",
                f"the sender marks this message {processing_id!r} ({meaning}), not production",
                "note",
            )
        )
    sent_at, msh_reason = _time(msh.comp(7), "MSH-7", tz)
    if msh_reason:
        problems.append(Problem("MSH-7", msh_reason.removeprefix("MSH-7 "), "note"))

    pids = [s for s in segments if s.id == "PID"]
    identifiers: tuple[Identifier, ...] = ()
    if not pids:
        problems.append(Problem("PID", "there is no PID segment: the patient cannot be identified"))
    elif len(pids) > 1:
        problems.append(
            Problem(
                "PID",
                f"the message holds {len(pids)} PID segments (several "
                "patients); only one patient per message is taken",
            )
        )
    else:
        identifiers = _patient(pids[0])
        if not identifiers:
            problems.append(Problem("PID-3", "no patient identifier in PID-3 or PID-2"))

    groups: list[_Group] = []
    obr_count = 0
    for seg in segments[1:]:
        if seg.id == "OBR":
            obr_count += 1
            groups.append(_Group(seg.comp(1) or str(obr_count), seg.comp(7), seg.comp(8)))
        elif seg.id == "OBX":
            if not groups:
                groups.append(_Group("", "", ""))
            groups[-1].obx.append(seg)

    observations: list[Observation] = []
    for group in groups:
        observations.extend(
            _read_group(group, obr_count > 1, msh.comp(7), sending_app, mapping, tz, problems)
        )

    result = LabMessage(
        source="hl7",
        message_id=message_id,
        patient=PatientRef(identifiers=identifiers),
        observations=tuple(observations),
        problems=tuple(problems),
        sender=sender,
        sent_at=sent_at,
        processing_id=processing_id,
        raw=norm,
    )
    log.info(
        "hl7.parsed",
        message_id=message_id,
        sender=sender,
        observations=len(observations),
        problems=len(problems),
        usable=result.usable,
    )
    return result


_Triplet = tuple[str, str, str, int]  # code, text, coding system, OBX-3 component


def _triplets(obx: _Segment) -> list[_Triplet]:
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


def _read_group(
    group: _Group,
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
    unnamed: list[tuple[_Segment, str, str, _Triplet]] = []
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
    obx: _Segment,
    group: _Group,
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
    moment, reason = _time(obx.comp(14), "OBX-14", tz)
    if reason:
        return f"{name} {reason}", notes
    if moment is not None:
        return (moment, "OBX-14"), notes
    if companions is not None and companions.date is not None:
        raw_date, date_loc = companions.date
        moment, reason = _time(obx.text(raw_date), "test date", tz)
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
        moment, reason = _time(raw_time, label, tz)
        if reason:
            return f"{name} {reason}", notes
        if moment is not None:
            return (moment, label), notes
    moment, _ = _time(msh_time, "MSH-7", tz)
    if moment is None:
        return (
            f"{name} has no readable time (OBX-14, OBR-7, OBR-8, MSH-7 are empty or unreadable)",
            notes,
        )
    return (moment, "MSH-7"), notes


def _observation(
    cand: _Candidate,
    group: _Group,
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


def parse_batch(
    text: str,
    *,
    mapping: Mapping | None = None,
    assume_tz: str = "UTC",
    limits: ParseLimits = DEFAULT_LIMITS,
) -> list[LabMessage]:
    """Every message of a file; a message that is not HL7, or is over one of `limits`,
    comes back quarantined (on its own: the others of the batch are read)."""
    out: list[LabMessage] = []
    for index, chunk in enumerate(split_batch(text), start=1):
        try:
            out.append(parse_message(chunk, mapping=mapping, assume_tz=assume_tz, limits=limits))
        except ParseError as exc:
            digest = hashlib.sha256(chunk.encode("utf-8", "replace")).hexdigest()[:16]
            out.append(
                LabMessage(
                    source="hl7",
                    message_id=f"sha256:{digest}",
                    patient=PatientRef(),
                    problems=(Problem(f"message {index}", exc.reason),),
                    raw=chunk,
                )
            )
    return out


# --- acknowledgements ----------------------------------------------------------


def _escape(text: str, sep: str, enc: str) -> str:
    comp, rep, esc, sub = (list(enc) + ["^", "~", "\\", "&"][len(enc) :])[:4]
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in ((sep, "F"), (comp, "S"), (rep, "R"), (sub, "T")):
        out = out.replace(char, f"{esc}{code}{esc}")
    return " ".join(out.split())


def _version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric parts of MSH-12; ASCII digits only (str.isdigit() also
    accepts '²', which int() refuses, and a stored message must still be answered)."""
    parts = []
    for piece in version.split("."):
        if not (piece.isascii() and piece.isdigit()):
            break
        parts.append(int(piece))
    return tuple(parts)


def build_ack(
    message_text: str,
    code: AckCode,
    error_text: str | None = None,
    *,
    hl7_error_code: str = "207",
    now: datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The ACK for a message: MSA with `code` and the message's MSH-10, ERR on AE/AR.

    Sender and receiver are swapped, version and processing ID echoed. It works on
    any text, even one that is not HL7 (then with default separators and an empty
    MSA-2), so a sender always gets an answer. `hl7_error_code` is from HL7 table
    0357 (207 application error, 200 unsupported message type...).
    """
    header = next((line for line in _lines(message_text) if line.startswith("MSH")), "")
    try:
        sep, enc = _check_header(header)
        fields = header.split(sep)
    except ParseError:
        sep, enc, fields = "|", "^~\\&", ["MSH", "^~\\&"]

    def msh(n: int) -> str:
        return fields[n - 1] if n - 1 < len(fields) else ""

    comp = enc[0]
    msh9 = msh(9).split(comp)
    trigger = msh9[1] if len(msh9) > 1 else ""
    version = msh(12).split(comp)[0] or "2.5.1"
    modern = _version_tuple(version) >= (2, 5)
    structure = f"{comp}ACK" if _version_tuple(version) >= (2, 3, 1) else ""
    moment = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")
    ack_id = control_id or ("ACK" + uuid.uuid4().hex[:17])
    msh_out = sep.join(
        [
            "MSH",
            enc,
            msh(5),
            msh(6),
            msh(3),
            msh(4),
            moment,
            "",
            f"ACK{comp}{trigger}{structure}",
            ack_id,
            msh(11) or "P",
            msh(12) or version,
        ]
    )
    segments = [msh_out]
    msa = ["MSA", code, msh(10)]
    if code != "AA":
        text = error_text or _HL7_ERRORS.get(hl7_error_code, "Application error")
        label = _HL7_ERRORS.get(hl7_error_code, "Application error")
        error_code = comp.join([hl7_error_code, _escape(label, sep, enc), "HL70357"])
        if modern:
            segments.append(sep.join(["MSA", code, msh(10)]))
            segments.append(
                sep.join(
                    ["ERR", "", "", error_code, "E", "", "", "", _escape(text, sep, enc)[:250]]
                )
            )
        else:
            sub = enc[3] if len(enc) > 3 else "&"
            old_code = sub.join([hl7_error_code, _escape(label, sep, enc), "HL70357"])
            msa.append(_escape(text, sep, enc)[:80])
            segments.append(sep.join(msa))
            segments.append(sep.join(["ERR", comp * 3 + old_code]))
    else:
        segments.append(sep.join(msa))
    return "".join(s + "\r" for s in segments)
