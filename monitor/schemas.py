"""Edge models: everything a person or a file hands us is parsed here, once.

The replay scenario format (shared/contracts/replay.md) is the common language: the
CLI's `enroll --file` takes its `patient` object, and the event kinds are the same.
Errors name the offending field as a dotted path (`events[3].results.alt`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from statistics import fmean
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.core.domain import (
    DoseEvent,
    Event,
    LabEvent,
    Patient,
    StopEvent,
    SymptomEvent,
)
from monitor.core.units import ANALYTES, UnitError, to_canonical

Analyte = Literal["alt", "ast", "alp", "bilirubin", "ggt"]
SymptomName = Literal["fatigue", "nausea", "vomiting", "ruq_pain", "jaundice", "resolved"]
LabValue = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


class BaselineIn(Strict):
    alt: LabValue | list[LabValue]
    ast: LabValue | list[LabValue]
    alp: LabValue | list[LabValue] | None = None
    bilirubin: LabValue | list[LabValue] | None = None
    ggt: LabValue | list[LabValue] | None = None

    @field_validator("*")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("an empty list has no mean")
        return v

    def means(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for analyte in ANALYTES:
            value = getattr(self, analyte)
            if value is not None:
                out[analyte] = fmean(value) if isinstance(value, list) else float(value)
        return out


class UlnIn(Strict):
    alt: Positive | None = None
    ast: Positive | None = None
    alp: Positive | None = None
    bilirubin: Positive | None = None
    ggt: Positive | None = None

    def values(self) -> dict[str, float]:
        return {a: float(getattr(self, a)) for a in ANALYTES if getattr(self, a) is not None}


class PatientIn(Strict):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    weight_kg: Positive
    start: AwareDatetime
    start_dose_mg: Positive | None = None
    prior_toxic_dose_mg: Positive | None = None
    tpmt: Literal["normal", "intermediate", "poor", "unknown"] = "unknown"
    nudt15: Literal["normal", "intermediate", "poor", "unknown"] = "unknown"
    baseline: BaselineIn
    uln: UlnIn = UlnIn()
    protocol: str | None = None
    identifiers: list[Annotated[str, Field(min_length=1, max_length=400)]] = []
    name: str | None = None
    # A [teams.<id>] of monitor.toml: its routes and rotas get this patient's alerts.
    care_team: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @field_validator("identifiers")
    @classmethod
    def _tokens(cls, v: list[str]) -> list[str]:
        """``SYSTEM|VALUE`` (FHIR token), or ``AUTHORITY:VALUE`` where unambiguous."""
        from monitor.identifiers import parse_identifier

        for ident in v:
            parse_identifier(ident)  # IdentifierError is a ValueError: a field error
        return v

    def to_domain(self, default_start_dose_mg: float) -> Patient:
        return Patient(
            id=self.id,
            weight_kg=float(self.weight_kg),
            start=utc(self.start),
            start_dose_mg=float(self.start_dose_mg or default_start_dose_mg),
            baseline=self.baseline.means(),
            uln=self.uln.values(),
            prior_toxic_dose_mg=(
                float(self.prior_toxic_dose_mg) if self.prior_toxic_dose_mg is not None else None
            ),
            tpmt=self.tpmt,
            nudt15=self.nudt15,
        )


class LabIn(Strict):
    kind: Literal["lab"]
    at: AwareDatetime
    results: dict[Analyte, LabValue]
    units: dict[Analyte, str] = {}
    uln: dict[Analyte, Positive] = {}
    preliminary: bool = False
    note: str | None = None

    @field_validator("results")
    @classmethod
    def _some(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("a lab event needs at least one result")
        return v

    @model_validator(mode="after")
    def _units(self) -> LabIn:
        for analyte, unit in self.units.items():
            try:
                to_canonical(analyte, 1.0, unit)
            except UnitError as exc:
                raise ValueError(f"units.{analyte}: {exc}") from exc
        return self

    def canonical(self) -> tuple[dict[str, float], dict[str, float]]:
        results: dict[str, float] = {
            a: to_canonical(a, float(v), self.units.get(a)) for a, v in self.results.items()
        }
        ulns: dict[str, float] = {
            a: to_canonical(a, float(v), self.units.get(a)) for a, v in self.uln.items()
        }
        return results, ulns

    def payload(self) -> dict[str, Any]:
        results, ulns = self.canonical()
        return {
            "results": results,
            "uln": ulns,
            "original": {a: [float(v), self.units.get(a)] for a, v in self.results.items()},
            "preliminary": self.preliminary,
        }


class SymptomsIn(Strict):
    kind: Literal["symptoms"]
    at: AwareDatetime
    symptoms: Annotated[list[SymptomName], Field(min_length=1)]
    note: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "symptoms": sorted({s for s in self.symptoms if s != "resolved"}),
            "resolved": "resolved" in self.symptoms,
        }


class DoseIn(Strict):
    kind: Literal["dose"]
    at: AwareDatetime
    dose_mg: Positive
    note: str | None = None

    def payload(self) -> dict[str, Any]:
        return {"dose_mg": float(self.dose_mg)}


class StopIn(Strict):
    kind: Literal["stop"]
    at: AwareDatetime
    reason: str = ""
    note: str | None = None

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason}


EventIn = Annotated[LabIn | SymptomsIn | DoseIn | StopIn, Field(discriminator="kind")]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient: PatientIn
    events: list[EventIn] = []
    until: AwareDatetime
    description: str | None = None
    comment: str | None = None


def event_from_payload(event_id: str, kind: str, at: datetime, payload: dict[str, Any]) -> Event:
    """Rebuild a core event from a stored (already validated, canonical) payload."""
    if kind == "lab":
        return LabEvent(
            id=event_id,
            at=at,
            results={k: float(v) for k, v in payload["results"].items()},
            uln={k: float(v) for k, v in payload.get("uln", {}).items()},
            preliminary=bool(payload.get("preliminary", False)),
            held={str(k): str(v) for k, v in payload.get("held", {}).items()},
        )
    if kind == "symptoms":
        return SymptomEvent(
            id=event_id,
            at=at,
            symptoms=frozenset(payload.get("symptoms", [])),
            resolved=bool(payload.get("resolved", False)),
        )
    if kind == "dose":
        return DoseEvent(id=event_id, at=at, dose_mg=float(payload["dose_mg"]))
    if kind == "stop":
        return StopEvent(id=event_id, at=at, reason=str(payload.get("reason", "")))
    raise ValueError(f"unknown event kind {kind!r}")


def error_path(loc: tuple[int | str, ...]) -> str:
    """`('events', 3, 'lab', 'results', 'alt')` -> `events[3].results.alt`."""
    out = ""
    skip_tag = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            skip_tag = True
            continue
        if skip_tag and part in ("lab", "symptoms", "dose", "stop"):
            skip_tag = False
            continue
        skip_tag = False
        if "-" in part or "[" in part or part in ("float", "int", "str", "bool", "list", "dict"):
            continue  # pydantic's union-member and validator tags, not field names
        out += f".{part}" if out else part
    return out


def describe(exc: ValidationError) -> str:
    """The first error of a validation failure as one line: `path: problem`."""
    errors = exc.errors()
    # Of a union's failed branches, the one that got furthest names the field best
    # (`baseline.alt[1]`, not "not a number" for the list as a whole).
    err = max(errors, key=lambda e: sum(isinstance(p, int) for p in e["loc"]))
    if err["loc"][:1] != errors[0]["loc"][:1]:
        err = errors[0]
    path = error_path(tuple(err["loc"]))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "union_tag_invalid":
        msg = (
            f"unknown event kind {err.get('input', {}).get('kind')!r}"
            if isinstance(err.get("input"), dict)
            else msg
        )
    elif err["type"] == "union_tag_not_found":
        msg = "missing field 'kind'"
    sub = re.match(r"^([a-z_]+(?:\.[a-z_]+)+): (.*)$", msg)
    if sub and err["type"] == "value_error":
        path = f"{path}.{sub.group(1)}" if path else sub.group(1)
        return f"{path}: {sub.group(2)}"
    given = err.get("input")
    if err["type"] not in (
        "missing",
        "union_tag_not_found",
        "union_tag_invalid",
    ) and not isinstance(given, dict | list):
        msg = f"{msg} (got {given!r})"
    return f"{path or 'scenario'}: {msg}"
