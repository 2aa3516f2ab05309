"""FHIR R4 lab results: an Observation or a Bundle of any kind, into one LabMessage per patient.

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
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

import structlog
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME, UnitError
from monitor.sources.limits import (
    DEFAULT_LIMITS,
    ParseLimits,
    check_fhir_size,
    check_json_depth,
)
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
    as_utc,
    date_as_utc,
    parse_iso_datetime,
    parse_measurement,
    plausible,
    resolve_tz,
)

log = structlog.get_logger(__name__)

ACCEPTED_BUNDLE_TYPES = ("batch", "transaction", "collection", "document", "searchset", "message")
_MAX_DEPTH = 8
_STATUS: dict[str, Status] = {
    "final": "final",
    "amended": "corrected",
    "corrected": "corrected",
    "preliminary": "preliminary",
}
# Ignored by rule: the lab says there is no result (README, "Every value accounted for").
_STATUS_IGNORED = {
    "registered": "the result is not available yet",
    "cancelled": "the test was cancelled; there is no result",
}
_MODELS: dict[str, Any] = {
    "Observation": FhirObservation,
    "Patient": Patient,
    "DiagnosticReport": DiagnosticReport,
}


@dataclass
class _Scope:
    """The references one Bundle can resolve: fullUrl and Type/id of its entries."""

    parent: _Scope | None
    index: dict[str, int] = field(default_factory=dict)


@dataclass
class _Entry:
    number: int
    location: str
    raw: dict[str, Any]
    scope: _Scope
    model: Any = None
    invalid: str | None = None  # why validation failed

    @property
    def kind(self) -> str:
        return str(self.raw.get("resourceType", ""))

    @property
    def label(self) -> str:
        rid = self.raw.get("id")
        return f"{self.location} ({self.kind}/{rid})" if rid else f"{self.location} ({self.kind})"


@dataclass
class _Subject:
    key: str
    label: str
    patient: PatientRef
    observations: list[Observation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class _Context:
    mapping: Mapping
    tz: tzinfo
    entries: list[_Entry] = field(default_factory=list)
    payload_problems: list[Problem] = field(default_factory=list)
    # entry number of an Observation -> (time, source, subject reference, scope) inherited
    # from the panel or report listing it
    inherited: dict[int, list[tuple[Any, TimeSource, Any, _Scope]]] = field(default_factory=dict)


# --- walking the JSON ----------------------------------------------------------


def _keys(raw: dict[str, Any], entry: dict[str, Any] | None) -> list[str]:
    keys = []
    kind, rid = raw.get("resourceType"), raw.get("id")
    if isinstance(kind, str) and isinstance(rid, str) and rid:
        keys.append(f"{kind}/{rid}")
    if entry is not None:
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            keys.append(full_url)
        request = entry.get("request")
        if isinstance(request, dict) and isinstance(request.get("url"), str):
            url = request["url"].split("?", 1)[0]
            if url.count("/") == 1:
                keys.append(url)
    return keys


def _walk(
    raw: dict[str, Any],
    location: str,
    scope: _Scope | None,
    depth: int,
    ctx: _Context,
    entry: dict[str, Any] | None = None,
) -> None:
    if raw.get("resourceType") != "Bundle":
        number = len(ctx.entries)
        own = scope or _Scope(None)
        ctx.entries.append(_Entry(number, location or "resource", raw, own))
        for key in _keys(raw, entry):
            own.index.setdefault(key, number)
        return
    here = location or "Bundle"
    bundle_type = raw.get("type")
    if bundle_type not in ACCEPTED_BUNDLE_TYPES:
        ctx.payload_problems.append(
            Problem(
                here,
                f"Bundle type {bundle_type!r} is not one "
                f"that is read ({', '.join(ACCEPTED_BUNDLE_TYPES)})",
            )
        )
        return
    if depth > _MAX_DEPTH:
        ctx.payload_problems.append(
            Problem(here, f"Bundles are nested more than {_MAX_DEPTH} deep")
        )
        return
    inner = _Scope(scope)
    entries = raw.get("entry") or []
    if not isinstance(entries, list):
        ctx.payload_problems.append(Problem(here, "Bundle.entry is not a list"))
        return
    for i, item in enumerate(entries, start=1):
        where = f"{location} > entry {i}" if location else f"entry {i}"
        if not isinstance(item, dict):
            ctx.payload_problems.append(Problem(where, "the entry is not a JSON object", "note"))
            continue
        resource = item.get("resource")
        if resource is None:
            continue  # a DELETE request or a response: nothing to read
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            ctx.payload_problems.append(
                Problem(where, "the entry's resource has no resourceType", "note")
            )
            continue
        _walk(resource, where, inner, depth + 1, ctx, item)


def _resolve(reference: str, scope: _Scope, ctx: _Context) -> _Entry | None:
    ref = reference.split("/_history/", 1)[0]
    candidates = [ref]
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and "://" in ref:
        candidates.append("/".join(parts[-2:]))
    s: _Scope | None = scope
    while s is not None:
        for c in candidates:
            if c in s.index:
                return ctx.entries[s.index[c]]
        s = s.parent
    return None


def _validation_reason(exc: ValidationError, show_input: bool) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "resource"
        msg = str(err.get("msg", "invalid")).split("\n")[0]
        value = err.get("input")
        if show_input and isinstance(value, str | int | float) and len(str(value)) <= 40:
            parts.append(f"{where} {value!r}: {msg}")
        else:
            parts.append(f"{where}: {msg}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _validate(entry: _Entry) -> None:
    model = _MODELS.get(entry.kind)
    if model is None:
        return
    try:
        entry.model = model.model_validate(entry.raw)
    except ValidationError as exc:
        entry.invalid = _validation_reason(exc, show_input=entry.kind != "Patient")
    except (ValueError, TypeError) as exc:  # fhir.resources raises these on odd shapes too
        entry.invalid = f"{type(exc).__name__}"


# --- small readers --------------------------------------------------------------


def _time(value: Any, tz: tzinfo) -> datetime | str | None:
    """An effective/issued value in UTC; a reason string when it is not a full date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value, tz)
    if isinstance(value, date):
        return date_as_utc(value, tz)
    return f"{value!s} is not a full date"


def _codings(concept: Any) -> list[tuple[str, str, str]]:
    if concept is None:
        return []
    return [
        (str(c.system or ""), str(c.code or ""), str(c.display or ""))
        for c in (concept.coding or [])
    ]


def _concept_texts(concept: Any) -> list[str]:
    texts = [t for _, c, d in _codings(concept) for t in (c, d) if t]
    if concept is not None and concept.text:
        texts.append(str(concept.text))
    return texts


def _analyte(concept: Any, mapping: Mapping) -> tuple[str | None, SourceCode | None, bool]:
    """(analyte, the coding that named it, conflict) for a CodeableConcept."""
    found: list[tuple[str, SourceCode]] = []
    for system, code, display in _codings(concept):
        analyte = mapping.analyte_for(system, code)
        if analyte:
            found.append((analyte, SourceCode(system, code, display)))
    if not found:
        return None, None, False
    return found[0][0], found[0][1], len({a for a, _ in found}) > 1


def _unmapped_liver(concept: Any, mapping: Mapping) -> bool:
    codings = _codings(concept)
    if any(mapping.is_not_monitored(s, c) for s, c, _ in codings):
        return False
    return mapping.looks_like_liver(*_concept_texts(concept))


def _number_text(value: Decimal | float | int) -> str:
    """A number as the sender wrote it, without float noise (``8.6``, not ``8.5999``)."""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(str(value)).normalize(), "f")


# --- one Observation ------------------------------------------------------------


def _value(
    holder: Any, analyte: str, mapping: Mapping
) -> tuple[float, str, str, str | None, str] | str:
    """(canonical value, value text, unit text, comparator, unit used) or a reason."""
    name = DISPLAY_NAME[analyte]
    q = holder.valueQuantity
    if q is not None:
        if q.value is None:
            return f"{name} valueQuantity has no value"
        number = float(q.value)
        shown = _number_text(q.value)
        if number < 0:
            return f"{name} value {shown} is negative"
        if not plausible(number):
            return f"{name} value {shown} is too large to be a lab value"
        units = [str(u) for u in (q.code, q.unit) if u]
        if not units:
            return f"{name} value {shown} has no unit; a unit is never guessed"
        for unit in units:
            try:
                return (
                    mapping.to_canonical(analyte, number, unit),
                    shown,
                    str(q.unit or unit),
                    str(q.comparator) if q.comparator else None,
                    unit,
                )
            except UnitError:
                continue
        return f"unknown unit {str(q.unit or q.code)!r} for {name}"
    if holder.valueString is not None:
        text = str(holder.valueString)
        try:
            parse_measurement(text)
        except ValueError:
            return f"{name} value {text!r} is not a number"
        return f"{name} value {text!r} has no unit; a unit is never guessed"
    if holder.valueInteger is not None:
        return f"{name} value {holder.valueInteger} has no unit; a unit is never guessed"
    for other in (
        "valueCodeableConcept",
        "valueRange",
        "valueRatio",
        "valueBoolean",
        "valueDateTime",
        "valuePeriod",
        "valueTime",
        "valueSampledData",
    ):
        if getattr(holder, other, None) is not None:
            return f"{name} value is a {other.removeprefix('value')}, not a number"
    absent = holder.dataAbsentReason
    if absent is not None:
        why = ", ".join(_concept_texts(absent)) or "no reason given"
        return f"{name} has no value (data absent: {why})"
    return f"{name} has no value"


def _uln(
    obs: Any, analyte: str, value_unit: str, mapping: Mapping, where: str, problems: list[Problem]
) -> tuple[float | None, str | None]:
    """The result's own upper limit in canonical units, and the range as text."""
    candidates = []
    for rr in obs.referenceRange or []:
        kinds = [c for _, c, _ in _codings(rr.type)]
        if kinds and "normal" not in kinds:
            continue
        if rr.high is None or rr.high.value is None or not plausible(float(rr.high.value)):
            continue
        unit = str(rr.high.code or rr.high.unit or value_unit)
        low = rr.low.value if rr.low is not None and rr.low.value is not None else None
        text = (f"{_number_text(low)}-" if low is not None else "<=") + (
            f"{_number_text(rr.high.value)} {rr.high.unit or rr.high.code or ''}".rstrip()
        )
        try:
            high = mapping.to_canonical(analyte, float(rr.high.value), unit)
        except UnitError:
            problems.append(
                Problem(
                    where,
                    f"{DISPLAY_NAME[analyte]} reference range unit "
                    f"{unit!r} is unknown; no ULN taken",
                    "note",
                )
            )
            return None, text
        candidates.append((high, text))
    if not candidates:
        return None, None
    if len({round(h, 6) for h, _ in candidates}) > 1:
        problems.append(
            Problem(
                where,
                f"{DISPLAY_NAME[analyte]} has several reference ranges "
                "with different upper limits; no ULN taken",
                "note",
            )
        )
        return None, candidates[0][1]
    if candidates[0][0] <= 0:
        problems.append(
            Problem(
                where,
                f"{DISPLAY_NAME[analyte]} reference range upper limit "
                "is not above zero; no ULN taken",
                "note",
            )
        )
        return None, candidates[0][1]
    return candidates[0]


def _observed_at(entry: _Entry, ctx: _Context) -> tuple[datetime, TimeSource] | str:
    obs = entry.model
    own: list[tuple[Any, TimeSource]] = [
        (obs.effectiveDateTime, "effectiveDateTime"),
        (obs.effectiveInstant, "effectiveInstant"),
        (
            obs.effectivePeriod.start if obs.effectivePeriod is not None else None,
            "effectivePeriod.start",
        ),
    ]
    inherited = [(t, s) for t, s, _, _ in ctx.inherited.get(entry.number, [])]
    for value, source in [*own, *inherited, (obs.issued, "issued")]:
        moment = _time(value, ctx.tz)
        if isinstance(moment, str):
            return f"{source} {moment}"
        if moment is not None:
            return moment, source
    return "has no time (no effective[x], no panel or report time, no issued)"


def _read(entry: _Entry, ctx: _Context, subject: _Subject) -> None:
    obs = entry.model
    where = entry.label
    mapping = ctx.mapping
    when = _observed_at(entry, ctx)
    at = when[0] if not isinstance(when, str) else None

    def hold(reason: str, label: str, code: str, effect: Effect = "held") -> None:
        subject.problems.append(Problem(where, reason, effect, label=label, at=at, code=code))

    parent, parent_code, conflict = _analyte(obs.code, mapping)
    if conflict:
        hold("its codes name different liver tests", *_sender_code(obs.code, mapping))
        return
    targets: list[tuple[str, SourceCode, Any]] = []
    components = list(obs.component or [])
    if parent and parent_code:
        holder = obs
        if not _has_value(obs):
            same = [c for c in components if _analyte(c.code, mapping)[0] == parent]
            if same:
                holder = same[0]
                components = [c for c in components if c is not same[0]]
        targets.append((parent, parent_code, holder))
    for comp in components:
        analyte, code, clash = _analyte(comp.code, mapping)
        if analyte and code and not clash and analyte != parent:
            targets.append((analyte, code, comp))
        elif not analyte and _unmapped_liver(comp.code, mapping):
            hold(
                f"component code {_code_label(comp.code)!r} looks like a liver test "
                "but is not mapped (add it to config/mapping.toml)",
                *_sender_code(comp.code, mapping),
            )
    if not targets:
        if _unmapped_liver(obs.code, mapping):
            hold(
                f"code {_code_label(obs.code)!r} looks like "
                "a liver test but is not mapped (add it to "
                "config/mapping.toml)",
                *_sender_code(obs.code, mapping),
            )
        return

    status_text = str(obs.status or "")
    for analyte, code, holder in targets:
        name = DISPLAY_NAME[analyte]
        token = _token(code.system, code.code)
        if status_text == "entered-in-error":
            hold(
                f"{name} is marked entered-in-error: the lab "
                "withdrew it; a person must check what was taken "
                "in before",
                analyte,
                token,
                "quarantine",
            )
            continue
        if status_text in _STATUS_IGNORED:
            hold(
                f"{name} status {status_text!r}: {_STATUS_IGNORED[status_text]}",
                analyte,
                token,
                "ignored",
            )
            continue
        if status_text not in _STATUS:
            hold(
                f"{name} status {status_text!r} carries no "
                "result to take (final, amended, corrected, "
                "preliminary)",
                analyte,
                token,
            )
            continue
        read = _value(holder, analyte, mapping)
        if isinstance(read, str):
            hold(read, analyte, token)
            continue
        value, shown, unit_text, comparator, unit_used = read
        if isinstance(when, str):
            hold(f"{name} {when}", analyte, token)
            continue
        uln, range_text = _uln(obs, analyte, unit_used, mapping, where, subject.problems)
        flag = None
        for concept in obs.interpretation or []:
            codes = [c for _, c, _ in _codings(concept) if c]
            flag = codes[0] if codes else (str(concept.text) if concept.text else None)
            break
        subject.observations.append(
            Observation(
                analyte=analyte,
                value=value,
                unit=CANONICAL_UNIT[analyte],
                original_value=shown,
                original_unit=unit_text,
                uln=uln,
                observed_at=when[0],
                observed_at_source=when[1],
                status=_STATUS[status_text],
                code=code,
                abnormal_flag=flag,
                comparator=comparator,
                reference_range=range_text,
                source_ref=where,
            )
        )


def _has_value(holder: Any) -> bool:
    return any(
        getattr(holder, name, None) is not None
        for name in (
            "valueQuantity",
            "valueString",
            "valueInteger",
            "valueCodeableConcept",
            "valueRange",
            "valueRatio",
            "valueBoolean",
            "valueDateTime",
            "valuePeriod",
            "valueTime",
            "valueSampledData",
        )
    )


def _code_label(concept: Any) -> str:
    codings = _codings(concept)
    if codings:
        system, code, display = codings[0]
        return "|".join(p for p in (system, code) if p) + (f" {display}" if display else "")
    return str(concept.text or "") if concept is not None else ""


def _token(system: str, code: str) -> str:
    """The sender's code as ``system|code`` (FHIR token syntax)."""
    return f"{system}|{code}"


def _sender_code(concept: Any, mapping: Mapping) -> tuple[str, str]:
    """(label, ``system|code``) a held value is known by when its code is not mapped: the
    coding that reads as a liver test (else the first), named by its display."""
    codings = _codings(concept)
    text = str(concept.text or "") if concept is not None else ""
    if not codings:
        return text, ""
    liver = [c for c in codings if mapping.looks_like_liver(c[1], c[2])]
    system, code, display = (liver or codings)[0]
    return display or text or code, _token(system, code)


def _raw_sender_code(raw: dict[str, Any], mapping: Mapping) -> tuple[str, str]:
    """(label, ``system|code``) of an Observation that is not valid FHIR, from its JSON."""
    concept = raw.get("code")
    if not isinstance(concept, dict):
        return "", ""
    text = concept["text"] if isinstance(concept.get("text"), str) else ""
    first: tuple[str, str] | None = None
    for coding in _list(concept.get("coding")):
        if not isinstance(coding, dict):
            continue
        system, code = str(coding.get("system") or ""), str(coding.get("code") or "")
        analyte = mapping.analyte_for(system, code)
        if analyte:
            return analyte, _token(system, code)
        if first is None and code:
            first = (str(coding.get("display") or "") or text or code, _token(system, code))
    return first or (text, "")


# --- subjects ----------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _raw_codes_liver(raw: dict[str, Any], mapping: Mapping) -> bool:
    """Does an Observation's raw JSON name a liver test? Works on invalid resources too."""
    concepts = [raw.get("code")] + [
        c.get("code") for c in _list(raw.get("component")) if isinstance(c, dict)
    ]
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
        for coding in _list(concept.get("coding")):
            if not isinstance(coding, dict):
                continue
            system, code = str(coding.get("system") or ""), str(coding.get("code") or "")
            if mapping.analyte_for(system, code):
                return True
            texts += [str(coding.get("display") or ""), code]
        if mapping.looks_like_liver(*texts):
            return True
    return False


def _subject_of(
    entry: _Entry, ctx: _Context, subjects: dict[str, _Subject], relevant: bool
) -> _Subject | None:
    """The patient an Observation belongs to, created on first sight.

    An Observation that is no liver test only makes its patient known (one message
    per patient found); a missing or odd subject is reported for liver results only.
    """
    raw_subject = entry.raw.get("subject")
    reference: str | None = None
    scope = entry.scope
    if isinstance(raw_subject, dict):
        ref = raw_subject.get("reference")
        reference = ref if isinstance(ref, str) and ref else None
        ident = raw_subject.get("identifier")
        if reference is None and isinstance(ident, dict) and ident.get("value"):
            system, value = str(ident.get("system") or ""), str(ident.get("value"))
            key = f"identifier:{system}|{value}"
            if key not in subjects:
                subjects[key] = _Subject(
                    key, f"{system}|{value}", PatientRef(identifiers=(Identifier(system, value),))
                )
            return subjects[key]
    if reference is None:
        for _, _, ref, ref_scope in ctx.inherited.get(entry.number, []):
            if ref:
                reference, scope = ref, ref_scope
                break
    if reference is None:
        if not relevant:
            return None
        key = "none"
        if key not in subjects:
            subjects[key] = _Subject(key, "no-subject", PatientRef())
            subjects[key].problems.append(
                Problem("subject", "Observations without a subject (patient) cannot be taken in")
            )
        return subjects[key]
    target = _resolve(reference, scope, ctx)
    if target is not None:
        kind = target.kind
    else:
        kind = reference.split("/")[-2] if "/" in reference else ""
    if kind and kind != "Patient" and not relevant:
        return None
    if target is not None and isinstance(target.raw.get("id"), str) and target.raw["id"]:
        label = f"{target.kind}/{target.raw['id']}"  # one patient even if listed twice
    elif target is not None:
        label = f"entry:{target.number}"
    else:
        label = reference
    key = f"subject:{label}"
    if key in subjects:
        return subjects[key]
    subject = _Subject(key, label, PatientRef(reference=reference))
    subjects[key] = subject
    if kind and kind != "Patient":
        subject.problems.append(
            Problem("subject", f"the subject {reference!r} is a {kind}, not a Patient")
        )
    elif target is not None and target.invalid:
        subject.problems.append(
            Problem(target.label, f"the Patient resource is not valid FHIR ({target.invalid})")
        )
    elif target is not None and target.model is not None:
        ids = [
            Identifier(str(ident.system or ""), str(ident.value), _identifier_kind(ident))
            for ident in target.model.identifier or []
            if ident.value
        ]
        subject.patient = PatientRef(identifiers=tuple(ids), reference=reference)
    return subject


def _identifier_kind(ident: Any) -> str:
    codes = [c for _, c, _ in _codings(ident.type)] if ident.type is not None else []
    return codes[0] if codes else ""


def _inherit(ctx: _Context) -> None:
    """Times and subjects that panels and reports hand down to the Observations they list."""
    for entry in ctx.entries:
        model = entry.model
        if model is None:
            continue
        source: TimeSource
        if entry.kind == "Observation" and model.hasMember:
            refs, source = model.hasMember, "panel effective"
            when = (
                model.effectiveDateTime
                or model.effectiveInstant
                or (model.effectivePeriod.start if model.effectivePeriod is not None else None)
            )
        elif entry.kind == "DiagnosticReport" and model.result:
            refs, source = model.result, "DiagnosticReport effective"
            when = model.effectiveDateTime or (
                model.effectivePeriod.start if model.effectivePeriod is not None else None
            )
        else:
            continue
        subject = model.subject.reference if model.subject is not None else None
        for ref in refs:
            if not ref.reference:
                continue
            target = _resolve(str(ref.reference), entry.scope, ctx)
            if target is not None and target.kind == "Observation":
                ctx.inherited.setdefault(target.number, []).append(
                    (when, source, subject, entry.scope)
                )
    # a report's time is a better guess than a panel's only if the panel has none: keep
    # panels first (they are nearer the result)
    for items in ctx.inherited.values():
        items.sort(key=lambda item: 0 if item[1] == "panel effective" else 1)


# --- entry point -------------------------------------------------------------------


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
    ctx = _Context(mapping or default_mapping(), resolve_tz(assume_tz))
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
        _walk(data, "", None, 0, ctx)
    except RecursionError as exc:
        raise ParseError("the JSON is nested too deeply") from exc

    seen: dict[str, tuple[str, int]] = {}
    observations: list[_Entry] = []
    duplicates: dict[int, str] = {}  # entry number -> "same" | "different"
    for entry in ctx.entries:
        if entry.kind == "Observation" and isinstance(entry.raw.get("id"), str):
            fingerprint = json.dumps(entry.raw, sort_keys=True, default=str)
            key = f"Observation/{entry.raw['id']}"
            if key in seen:
                duplicates[entry.number] = "same" if seen[key][0] == fingerprint else "different"
                continue
            seen[key] = (fingerprint, entry.number)
        _validate(entry)
        if entry.kind == "Observation":
            observations.append(entry)
    if not observations:
        reasons = "; ".join(str(p) for p in ctx.payload_problems)
        raise ParseError(
            "no Observation in the payload" + (f" ({reasons})" if reasons else ""),
            tuple(ctx.payload_problems),
        )
    _inherit(ctx)

    subjects: dict[str, _Subject] = {}
    for entry in ctx.entries:
        if entry.kind != "Observation":
            continue
        relevant = _raw_codes_liver(entry.raw, ctx.mapping)
        subject = _subject_of(entry, ctx, subjects, relevant)
        if subject is None:
            continue  # not a liver result, and no patient to make known
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
                label, token = _raw_sender_code(entry.raw, ctx.mapping)
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
        _read(entry, ctx, subject)

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
