"""HL7 v2 lab results (ORU^R01, v2.3 to 2.5.1): parse, split batches, build ACKs.

The work is split by level: `hl7_text` (segments, batches, separators, fields),
`hl7_obx` (one OBX to a value or a problem), `hl7_ack` (acknowledgements); this
module reads the message and its patient and re-exports the public names.

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

import structlog

from monitor.sources.hl7_ack import AckCode, build_ack
from monitor.sources.hl7_obx import Group, parse_time, read_group
from monitor.sources.hl7_text import (
    Segment,
    normalize,
    read_segments,
    segment_lines,
    split_batch,
)
from monitor.sources.limits import DEFAULT_LIMITS, ParseLimits, check_hl7
from monitor.sources.mapping import Mapping, default_mapping
from monitor.sources.model import (
    Identifier,
    LabMessage,
    Observation,
    ParseError,
    PatientRef,
    Problem,
)
from monitor.sources.values import resolve_tz

__all__ = [
    "SUPPORTED_VERSIONS",
    "AckCode",
    "build_ack",
    "normalize",
    "parse_batch",
    "parse_message",
    "split_batch",
]

log = structlog.get_logger(__name__)

SUPPORTED_VERSIONS: tuple[str, ...] = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")


def _patient(pid: Segment) -> tuple[Identifier, ...]:
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
    lines = segment_lines(text)
    check_hl7(lines, limits)
    norm = "".join(line + "\r" for line in lines)
    segments = read_segments(norm)
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
    sent_at, msh_reason = parse_time(msh.comp(7), "MSH-7", tz)
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

    groups: list[Group] = []
    obr_count = 0
    for seg in segments[1:]:
        if seg.id == "OBR":
            obr_count += 1
            groups.append(Group(seg.comp(1) or str(obr_count), seg.comp(7), seg.comp(8)))
        elif seg.id == "OBX":
            if not groups:
                groups.append(Group("", "", ""))
            groups[-1].obx.append(seg)

    observations: list[Observation] = []
    for group in groups:
        observations.extend(
            read_group(group, obr_count > 1, msh.comp(7), sending_app, mapping, tz, problems)
        )

    pv1 = next((s for s in segments if s.id == "PV1"), None)
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
        care_source=(pv1.comp(3) or None) if pv1 is not None else None,
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
