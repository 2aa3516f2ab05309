"""FHIR R4 payloads walked by hand: Bundles in Bundles, the references each can
resolve, resources validated one by one, the patient each Observation belongs to, and
the times panels and reports hand down (see `monitor.sources.fhir`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from monitor.sources.mapping import Mapping
from monitor.sources.model import (
    Identifier,
    Observation,
    PatientRef,
    Problem,
    SourceCode,
    TimeSource,
)
from monitor.sources.values import (
    as_utc,
    date_as_utc,
)

ACCEPTED_BUNDLE_TYPES = ("batch", "transaction", "collection", "document", "searchset", "message")
_MAX_DEPTH = 8
_MODELS: dict[str, Any] = {
    "Observation": FhirObservation,
    "Patient": Patient,
    "DiagnosticReport": DiagnosticReport,
}


@dataclass
class Scope:
    """The references one Bundle can resolve: fullUrl and Type/id of its entries."""

    parent: Scope | None
    index: dict[str, int] = field(default_factory=dict)


@dataclass
class Entry:
    number: int
    location: str
    raw: dict[str, Any]
    scope: Scope
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
class Subject:
    key: str
    label: str
    patient: PatientRef
    observations: list[Observation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class Context:
    mapping: Mapping
    tz: tzinfo
    entries: list[Entry] = field(default_factory=list)
    payload_problems: list[Problem] = field(default_factory=list)
    # entry number of an Observation -> (time, source, subject reference, scope) inherited
    # from the panel or report listing it
    inherited: dict[int, list[tuple[Any, TimeSource, Any, Scope]]] = field(default_factory=dict)


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


def walk(
    raw: dict[str, Any],
    location: str,
    scope: Scope | None,
    depth: int,
    ctx: Context,
    entry: dict[str, Any] | None = None,
) -> None:
    if raw.get("resourceType") != "Bundle":
        number = len(ctx.entries)
        own = scope or Scope(None)
        ctx.entries.append(Entry(number, location or "resource", raw, own))
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
    inner = Scope(scope)
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
        walk(resource, where, inner, depth + 1, ctx, item)


def resolve(reference: str, scope: Scope, ctx: Context) -> Entry | None:
    ref = reference.split("/_history/", 1)[0]
    candidates = [ref]
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and "://" in ref:
        candidates.append("/".join(parts[-2:]))
    s: Scope | None = scope
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


def validate(entry: Entry) -> None:
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


def moment_of(value: Any, tz: tzinfo) -> datetime | str | None:
    """An effective/issued value in UTC; a reason string when it is not a full date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value, tz)
    if isinstance(value, date):
        return date_as_utc(value, tz)
    return f"{value!s} is not a full date"


def codings_of(concept: Any) -> list[tuple[str, str, str]]:
    if concept is None:
        return []
    return [
        (str(c.system or ""), str(c.code or ""), str(c.display or ""))
        for c in (concept.coding or [])
    ]


def concept_texts(concept: Any) -> list[str]:
    texts = [t for _, c, d in codings_of(concept) for t in (c, d) if t]
    if concept is not None and concept.text:
        texts.append(str(concept.text))
    return texts


def analyte_of(concept: Any, mapping: Mapping) -> tuple[str | None, SourceCode | None, bool]:
    """(analyte, the coding that named it, conflict) for a CodeableConcept."""
    found: list[tuple[str, SourceCode]] = []
    for system, code, display in codings_of(concept):
        analyte = mapping.analyte_for(system, code)
        if analyte:
            found.append((analyte, SourceCode(system, code, display)))
    if not found:
        return None, None, False
    return found[0][0], found[0][1], len({a for a, _ in found}) > 1


def unmapped_liver(concept: Any, mapping: Mapping) -> bool:
    codings = codings_of(concept)
    if any(mapping.is_not_monitored(s, c) for s, c, _ in codings):
        return False
    return mapping.looks_like_liver(*concept_texts(concept))


def number_text(value: Decimal | float | int) -> str:
    """A number as the sender wrote it, without float noise (``8.6``, not ``8.5999``)."""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(str(value)).normalize(), "f")


# --- subjects ----------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def raw_codes_liver(raw: dict[str, Any], mapping: Mapping) -> bool:
    """Does an Observation's raw JSON name a liver test? Works on invalid resources too."""
    concepts = [raw.get("code")] + [
        c.get("code") for c in as_list(raw.get("component")) if isinstance(c, dict)
    ]
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
        for coding in as_list(concept.get("coding")):
            if not isinstance(coding, dict):
                continue
            system, code = str(coding.get("system") or ""), str(coding.get("code") or "")
            if mapping.analyte_for(system, code):
                return True
            texts += [str(coding.get("display") or ""), code]
        if mapping.looks_like_liver(*texts):
            return True
    return False


def subject_of(
    entry: Entry, ctx: Context, subjects: dict[str, Subject], relevant: bool
) -> Subject | None:
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
                subjects[key] = Subject(
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
            subjects[key] = Subject(key, "no-subject", PatientRef())
            subjects[key].problems.append(
                Problem("subject", "Observations without a subject (patient) cannot be taken in")
            )
        return subjects[key]
    if reference.startswith("#"):
        return _contained_subject(entry, reference, subjects)
    target = resolve(reference, scope, ctx)
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
    subject = Subject(key, label, PatientRef(reference=reference))
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


def _contained_subject(entry: Entry, reference: str, subjects: dict[str, Subject]) -> Subject:
    """A subject `#id` names a resource contained in the Observation itself: the patient
    is known by that resource's identifiers (a contained id means nothing elsewhere)."""
    found = next(
        (
            r
            for r in entry.raw.get("contained") or []
            if isinstance(r, dict) and r.get("id") == reference[1:]
        ),
        None,
    )
    ids: list[Identifier] = []
    if found is not None and found.get("resourceType") == "Patient":
        for ident in found.get("identifier") or []:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
                ids.append(Identifier(str(ident.get("system") or ""), ident["value"]))
    label = "; ".join(f"{i.system}|{i.value}" for i in ids) or f"{entry.label} {reference}"
    key = f"contained:{label}"
    if key in subjects:
        return subjects[key]
    subject = Subject(key, label, PatientRef(identifiers=tuple(ids)))
    subjects[key] = subject
    if found is None:
        why = f"the subject {reference!r} names no resource contained in the Observation"
        subject.problems.append(Problem("subject", why))
    elif found.get("resourceType") != "Patient":
        kind = found.get("resourceType")
        subject.problems.append(Problem("subject", f"the subject {reference!r} is a {kind}"))
    elif not ids:
        subject.problems.append(
            Problem("subject", f"the contained Patient {reference!r} has no identifier")
        )
    return subject


def _identifier_kind(ident: Any) -> str:
    codes = [c for _, c, _ in codings_of(ident.type)] if ident.type is not None else []
    return codes[0] if codes else ""


def inherit(ctx: Context) -> None:
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
            target = resolve(str(ref.reference), entry.scope, ctx)
            if target is not None and target.kind == "Observation":
                ctx.inherited.setdefault(target.number, []).append(
                    (when, source, subject, entry.scope)
                )
    # a report's time is a better guess than a panel's only if the panel has none: keep
    # panels first (they are nearer the result)
    for items in ctx.inherited.values():
        items.sort(key=lambda item: 0 if item[1] == "panel effective" else 1)
