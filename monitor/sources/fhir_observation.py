"""FHIR R4: one Observation (and its components) into liver `Observation`s, or the
`Problem` that says why a value is held, ignored or quarantined (see `monitor.sources.fhir`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME, UnitError
from monitor.sources.fhir_bundle import (
    Context,
    Entry,
    Subject,
    analyte_of,
    as_list,
    codings_of,
    concept_texts,
    moment_of,
    number_text,
    unmapped_liver,
)
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
    parse_measurement,
    plausible,
)

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
        shown = number_text(q.value)
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
        why = ", ".join(concept_texts(absent)) or "no reason given"
        return f"{name} has no value (data absent: {why})"
    return f"{name} has no value"


def _uln(
    obs: Any, analyte: str, value_unit: str, mapping: Mapping, where: str, problems: list[Problem]
) -> tuple[float | None, str | None]:
    """The result's own upper limit in canonical units, and the range as text."""
    candidates = []
    for rr in obs.referenceRange or []:
        kinds = [c for _, c, _ in codings_of(rr.type)]
        if kinds and "normal" not in kinds:
            continue
        if rr.high is None or rr.high.value is None or not plausible(float(rr.high.value)):
            continue
        unit = str(rr.high.code or rr.high.unit or value_unit)
        low = rr.low.value if rr.low is not None and rr.low.value is not None else None
        text = (f"{number_text(low)}-" if low is not None else "<=") + (
            f"{number_text(rr.high.value)} {rr.high.unit or rr.high.code or ''}".rstrip()
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


def _observed_at(entry: Entry, ctx: Context) -> tuple[datetime, TimeSource] | str:
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
        moment = moment_of(value, ctx.tz)
        if isinstance(moment, str):
            return f"{source} {moment}"
        if moment is not None:
            return moment, source
    return "has no time (no effective[x], no panel or report time, no issued)"


def read_observation(entry: Entry, ctx: Context, subject: Subject) -> None:
    obs = entry.model
    where = entry.label
    mapping = ctx.mapping
    when = _observed_at(entry, ctx)
    at = when[0] if not isinstance(when, str) else None

    def hold(reason: str, label: str, code: str, effect: Effect = "held") -> None:
        subject.problems.append(Problem(where, reason, effect, label=label, at=at, code=code))

    parent, parent_code, conflict = analyte_of(obs.code, mapping)
    if conflict:
        hold("its codes name different liver tests", *_sender_code(obs.code, mapping))
        return
    targets: list[tuple[str, SourceCode, Any]] = []
    components = list(obs.component or [])
    if parent and parent_code:
        holder = obs
        if not _has_value(obs):
            same = [c for c in components if analyte_of(c.code, mapping)[0] == parent]
            if same:
                holder = same[0]
                components = [c for c in components if c is not same[0]]
        targets.append((parent, parent_code, holder))
    for comp in components:
        analyte, code, clash = analyte_of(comp.code, mapping)
        if analyte and code and not clash and analyte != parent:
            targets.append((analyte, code, comp))
        elif not analyte and unmapped_liver(comp.code, mapping):
            hold(
                f"component code {_code_label(comp.code)!r} looks like a liver test "
                "but is not mapped (add it to config/mapping.toml)",
                *_sender_code(comp.code, mapping),
            )
    if not targets:
        if unmapped_liver(obs.code, mapping):
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
            codes = [c for _, c, _ in codings_of(concept) if c]
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
    codings = codings_of(concept)
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
    codings = codings_of(concept)
    text = str(concept.text or "") if concept is not None else ""
    if not codings:
        return text, ""
    liver = [c for c in codings if mapping.looks_like_liver(c[1], c[2])]
    system, code, display = (liver or codings)[0]
    return display or text or code, _token(system, code)


def raw_sender_code(raw: dict[str, Any], mapping: Mapping) -> tuple[str, str]:
    """(label, ``system|code``) of an Observation that is not valid FHIR, from its JSON."""
    concept = raw.get("code")
    if not isinstance(concept, dict):
        return "", ""
    text = concept["text"] if isinstance(concept.get("text"), str) else ""
    first: tuple[str, str] | None = None
    for coding in as_list(concept.get("coding")):
        if not isinstance(coding, dict):
            continue
        system, code = str(coding.get("system") or ""), str(coding.get("code") or "")
        analyte = mapping.analyte_for(system, code)
        if analyte:
            return analyte, _token(system, code)
        if first is None and code:
            first = (str(coding.get("display") or "") or text or code, _token(system, code))
    return first or (text, "")
