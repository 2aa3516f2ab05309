"""FHIR R4 lab results: an Observation or a Bundle of any kind, into one LabMessage per patient.

`fhir_bundle` walks the payload (Bundles, references, validation, subjects, inherited
times); `fhir_observation` reads one Observation; this module puts them together.

The JSON is walked by hand (Bundles inside Bundles, as in a collection of
reports or a transaction carrying a document) and each resource is validated on
its own with the `fhir.resources.R4B` models, so one bad resource costs only
itself. Only liver Observations are read; others are ignored unless their code
looks like a liver test that the mapping misses.

Per-problem decisions made here (see `monitor.sources.model` for the effects):

===========================================================  ==========
problem                                                      effect
===========================================================  ==========
not JSON, not a Bundle/Observation, no Observation at all    ParseError
Bundle type not accepted (history, *-response)               quarantine
no subject, subject not a Patient, Patient resource invalid  quarantine
status entered-in-error                                      quarantine
one resource id twice with different content                 quarantine
liver Observation invalid, value not a number, no value      held
missing or unknown unit, liver-looking code not mapped       held
status unknown (or not a result status), no readable time    held
status registered or cancelled                               ignored
same resource twice with the same content                    note (taken once)
reference range unusable, several disagreeing ranges         note (no ULN)
===========================================================  ==========

A held or ignored value names itself: `Problem.label` is the analyte, or the
sender's display for a code that is not mapped; `Problem.code` is the coding as
``system|code``; `Problem.at` is its draw time when that can be read.

Times: effective[x], else the panel that lists the Observation in hasMember,
else the DiagnosticReport that lists it in result, else `issued`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, tzinfo
from typing import Any

import structlog

from monitor.sources.fhir_bundle import (
    ACCEPTED_BUNDLE_TYPES,
    Context,
    Entry,
    Subject,
    inherit,
    raw_codes_liver,
    subject_of,
    validate,
    walk,
)
from monitor.sources.fhir_observation import raw_sender_code, read_observation
from monitor.sources.limits import (
    DEFAULT_LIMITS,
    ParseLimits,
    check_fhir_size,
    check_json_depth,
)
from monitor.sources.mapping import Mapping, default_mapping
from monitor.sources.model import (
    LabMessage,
    ParseError,
    Problem,
)
from monitor.sources.values import (
    as_utc,
    parse_iso_datetime,
    resolve_tz,
)

__all__ = ["ACCEPTED_BUNDLE_TYPES", "operation_outcome", "parse_fhir"]

log = structlog.get_logger(__name__)


# --- entry point -------------------------------------------------------------------


def _performer(raw: Any) -> str | None:
    """The first Observation.performer that names an Organization or a CareTeam."""
    performers = raw.get("performer") if isinstance(raw, dict) else None
    for p in performers if isinstance(performers, list) else []:
        ref = p.get("reference") if isinstance(p, dict) else None
        if isinstance(ref, str) and ref.split("/")[-2:-1] in (["Organization"], ["CareTeam"]):
            return "/".join(ref.split("/")[-2:])
    return None


def parse_fhir(
    payload: str | bytes | dict[str, Any],
    *,
    mapping: Mapping | None = None,
    assume_tz: str = "UTC",
    limits: ParseLimits = DEFAULT_LIMITS,
) -> list[LabMessage]:
    """One LabMessage per patient found in an Observation or Bundle (any nesting).

    A payload over `limits` (size before it is read as JSON, nesting after) raises
    `ParseError`."""
    ctx = Context(mapping or default_mapping(), resolve_tz(assume_tz))
    if isinstance(payload, dict):
        data: Any = payload
        check_json_depth(data, limits)
        digest_source = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    else:
        check_fhir_size(payload, limits)
        digest_source = (
            payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
        )
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"not JSON ({type(exc).__name__})") from exc
        check_json_depth(data, limits)
    if not isinstance(data, dict) or data.get("resourceType") not in ("Bundle", "Observation"):
        kind = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise ParseError(f"not a FHIR Bundle or Observation (found {kind!r})")
    root_id = data.get("id")
    if isinstance(root_id, str) and root_id:
        root = f"{data['resourceType']}/{root_id}"
    else:
        root = "sha256:" + hashlib.sha256(digest_source).hexdigest()[:16]
    try:
        walk(data, "", None, 0, ctx)
    except RecursionError as exc:
        raise ParseError("the JSON is nested too deeply") from exc

    seen: dict[str, tuple[str, int]] = {}
    observations: list[Entry] = []
    duplicates: dict[int, str] = {}  # entry number -> "same" | "different"
    for entry in ctx.entries:
        if entry.kind == "Observation" and isinstance(entry.raw.get("id"), str):
            fingerprint = json.dumps(entry.raw, sort_keys=True, default=str)
            key = f"Observation/{entry.raw['id']}"
            if key in seen:
                duplicates[entry.number] = "same" if seen[key][0] == fingerprint else "different"
                continue
            seen[key] = (fingerprint, entry.number)
        validate(entry)
        if entry.kind == "Observation":
            observations.append(entry)
    if not observations:
        reasons = "; ".join(str(p) for p in ctx.payload_problems)
        raise ParseError(
            "no Observation in the payload" + (f" ({reasons})" if reasons else ""),
            tuple(ctx.payload_problems),
        )
    inherit(ctx)

    subjects: dict[str, Subject] = {}
    care: dict[str, str] = {}  # subject key -> first performer Organization/CareTeam
    for entry in ctx.entries:
        if entry.kind != "Observation":
            continue
        relevant = raw_codes_liver(entry.raw, ctx.mapping)
        subject = subject_of(entry, ctx, subjects, relevant)
        if subject is None:
            continue  # not a liver result, and no patient to make known
        if subject.key not in care and (team_ref := _performer(entry.raw)):
            care[subject.key] = team_ref
        if entry.number in duplicates:
            if duplicates[entry.number] == "same":
                subject.duplicates += 1
            else:
                subject.problems.append(
                    Problem(
                        entry.label,
                        "this Observation id appears more than once with different content",
                    )
                )
            continue
        if entry.invalid:
            if relevant:
                label, token = raw_sender_code(entry.raw, ctx.mapping)
                subject.problems.append(
                    Problem(
                        entry.label,
                        f"the liver Observation is not valid FHIR R4 ({entry.invalid})",
                        "held",
                        label=label,
                        at=_raw_time(entry.raw, ctx.tz),
                        code=token,
                    )
                )
            continue
        read_observation(entry, ctx, subject)

    messages = []
    for subject in subjects.values():
        problems = list(ctx.payload_problems) + subject.problems
        if subject.duplicates:
            problems.append(
                Problem(
                    "Bundle",
                    f"{subject.duplicates} Observation(s) appear more "
                    "than once with the same content (e.g. a Bundle nested in "
                    "another); each was taken once",
                    "note",
                )
            )
        messages.append(
            LabMessage(
                source="fhir",
                message_id=f"{root}|{subject.label}",
                patient=subject.patient,
                observations=tuple(subject.observations),
                problems=tuple(problems),
                sender=_sender(data),
                sent_at=_timestamp(data, ctx.tz),
                care_source=care.get(subject.key),
            )
        )
    log.info(
        "fhir.parsed",
        payload=root,
        subjects=len(messages),
        observations=sum(len(m.observations) for m in messages),
        problems=sum(len(m.problems) for m in messages),
    )
    return messages


def _sender(data: dict[str, Any]) -> str:
    meta = data.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    return source if isinstance(source, str) else ""


def _raw_time(raw: dict[str, Any], tz: tzinfo) -> datetime | None:
    """The draw time of an Observation that is not valid FHIR, when its JSON gives one."""
    period = raw.get("effectivePeriod")
    for value in (
        raw.get("effectiveDateTime"),
        raw.get("effectiveInstant"),
        period.get("start") if isinstance(period, dict) else None,
    ):
        if isinstance(value, str) and len(value) >= 10:
            try:
                return parse_iso_datetime(value, tz)
            except ValueError:
                return None
    return None


def _timestamp(data: dict[str, Any], tz: tzinfo) -> datetime | None:
    stamp = data.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(stamp), tz)
    except ValueError:
        return None


def operation_outcome(problems: list[Problem] | tuple[Problem, ...]) -> dict[str, Any]:
    """An R4 OperationOutcome for an error answer: one issue per problem.

    Quarantine problems are errors, held values warnings, ignored values and notes
    information.
    """
    severity = {
        "quarantine": "error",
        "held": "warning",
        "ignored": "information",
        "note": "information",
    }
    code = {
        "quarantine": "processing",
        "held": "value",
        "ignored": "informational",
        "note": "informational",
    }
    issues = [
        {
            "severity": severity[p.effect],
            "code": code[p.effect],
            "details": {"text": str(p)},
            "diagnostics": p.reason,
            **({"location": [p.location]} if p.location else {}),
        }
        for p in problems
    ]
    if not issues:
        issues = [
            {"severity": "information", "code": "informational", "details": {"text": "no problems"}}
        ]
    return {"resourceType": "OperationOutcome", "issue": issues}
