"""What a lab source hands to intake: parsed results, already in canonical units.

Parsers never touch the store. They turn one payload into `LabMessage`s, each
carrying the liver results that could be read and, in plain words, everything
that could not (`problems`). The caller decides with `usable` whether a message
goes to intake or to quarantine; nothing is ever dropped without a `Problem`.

What each problem does to the message (`Problem.effect`):

- ``quarantine``: the whole message is held for a person. Used when taking in
  part of it could make the record *wrong*: no or several patients, a result the
  lab withdrew (HL7 status W/D, FHIR entered-in-error), two different copies of
  one resource, a payload that is not a lab result at all.
- ``held``: one liver value cannot be judged and waits in quarantine as its own
  item, while the rest of the message is stored: a unit that is missing or
  unknown, a value that is not a number (or a comparator that cannot be judged),
  a liver-looking code that is not mapped, a time that cannot be read. Holding
  the whole message would also hold back the good values, and with them a stop
  alert that may be due now; dropping the value would let a panel with a missing
  bilirubin look normal. `label` names the value (an analyte, or the sender's
  code), `at` its draw time when known, `code` the sender's ``system|code``.
  Ingest stores each as a quarantine item and marks the draw as waiting on it.
- ``ignored``: a liver-test line that carries no value by the sender's own word
  (status X "no result", I "pending", N "not asked", O "order detail"): a
  documented rule, kept in the message's record, never judged.
- ``note``: the value is taken; something about it is worth a look (a duplicate
  result replaced by the later one, a reference range that could not be read so
  the ULN is left empty, a message marked as a test message).

A message with no observation left is not usable either (see `quarantine_reason`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

SourceKind = Literal["hl7", "fhir", "csv"]
Status = Literal["final", "corrected", "preliminary"]
Effect = Literal["quarantine", "held", "ignored", "note"]
TimeSource = Literal[
    "OBX-14",  # the result's own observation time
    "OBX-4 group",  # CDC case notifications: a date OBX tied to the result by OBX-4 sub-ID
    "OBR-7",  # the request's observation (collection) time
    "OBR-8",  # the request's observation end time (analyzers that send no OBR-7)
    "MSH-7",  # the message time: the last resort
    "effectiveDateTime",
    "effectiveInstant",
    "effectivePeriod.start",
    "panel effective",  # the time of the panel Observation that lists this one in hasMember
    "DiagnosticReport effective",  # the time of the report that lists it in result
    "issued",  # the FHIR release time: the last resort
    "observed_at",  # the CSV column
]

STATUSES: tuple[str, ...] = ("final", "corrected", "preliminary")


@dataclass(frozen=True)
class Problem:
    """One thing a person should know about a payload, in words they would accept.

    `location` says where (``OBX 5``, ``OBR 2 OBX 19``, ``entry 14 (Observation/o14)``,
    ``row 7, column value``); `reason` says what, without the location.
    """

    location: str
    reason: str
    effect: Effect = "quarantine"
    label: str = ""  # held/ignored values: the analyte, or the sender's code when unmapped
    at: datetime | None = None  # held values: the draw time, when it could be read
    code: str = ""  # held/ignored values: the sender's code as ``system|code``

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}" if self.location else self.reason


@dataclass(frozen=True)
class Identifier:
    """A patient identifier: the authority or system that issued it, and the value.

    For HL7 the system is the assigning authority (PID-3.4: its namespace ID, or its
    universal ID when there is no namespace); for FHIR it is `Identifier.system`.
    `kind` is the identifier type code (PID-3.5, e.g. ``MR``) when the sender gives one.
    """

    system: str
    value: str
    kind: str = ""


@dataclass(frozen=True)
class PatientRef:
    """Who the results belong to, as the sender names them; matching is intake's job.

    `reference` is the FHIR subject reference (``Patient/pat2``, ``urn:uuid:...``)
    or None for HL7 and CSV.
    """

    identifiers: tuple[Identifier, ...] = ()
    reference: str | None = None

    @property
    def known(self) -> bool:
        return bool(self.identifiers) or bool(self.reference)


@dataclass(frozen=True)
class SourceCode:
    """The code the sender used for the test (system as sent: ``LN``, ``http://loinc.org``...)."""

    system: str
    code: str
    display: str = ""


@dataclass(frozen=True)
class Observation:
    """One liver result, its value and ULN converted to the analyte's canonical unit.

    `original_value` and `original_unit` keep the sender's text so a person can
    check the conversion; `reference_range` keeps the range text the ULN came from.
    `comparator` is ``<``, ``>``, ``<=`` or ``>=`` when the lab sent e.g. ``<^5``:
    the value is then a bound, not a measurement.
    """

    analyte: str
    value: float
    unit: str
    original_value: str
    original_unit: str
    uln: float | None
    observed_at: datetime
    observed_at_source: TimeSource
    status: Status
    code: SourceCode
    abnormal_flag: str | None = None
    comparator: str | None = None
    reference_range: str | None = None
    source_ref: str = ""


@dataclass(frozen=True)
class LabMessage:
    """One unit of intake: the results of one patient from one message, bundle or file.

    `message_id` is stable across resends (MSH-10, Bundle id + subject, file + row)
    so intake can take a resent message only once. `raw` is the message text for
    HL7 (so a message of a batch can be quarantined on its own), None otherwise.
    """

    source: SourceKind
    message_id: str
    patient: PatientRef
    observations: tuple[Observation, ...] = ()
    problems: tuple[Problem, ...] = ()
    sender: str = ""
    sent_at: datetime | None = None
    processing_id: str = ""
    raw: str | None = field(default=None, repr=False)
    # Where the patient is cared for, as the sender says: HL7 PV1-3.1 (point of care),
    # FHIR the first Observation.performer naming an Organization or CareTeam. Intake
    # maps it through [teams.X] sources to a care team (monitor/teams.py).
    care_source: str | None = None

    @property
    def quarantine_problems(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.effect == "quarantine")

    @property
    def held(self) -> tuple[Problem, ...]:
        """Values that wait in quarantine on their own while the rest is stored."""
        return tuple(p for p in self.problems if p.effect == "held")

    @property
    def usable(self) -> bool:
        """True when intake may take the message (values, or values to hold for the
        patient); False means the whole message is quarantined."""
        return not self.quarantine_problems and bool(self.observations or self.held)

    @property
    def quarantine_reason(self) -> str | None:
        """Why the message must be held, in one sentence; None when it is usable."""
        blocking = self.quarantine_problems
        if blocking:
            return "; ".join(str(p) for p in blocking)
        if not self.observations and not self.held:
            ignored = [str(p) for p in self.problems if p.effect == "ignored"]
            if ignored:
                return "no liver test result could be taken in: " + "; ".join(ignored)
            return "no liver test result in this message"
        return None


class ParseError(ValueError):
    """A payload that cannot be read at all (not HL7, not JSON, a rejected CSV file).

    The caller quarantines the payload with `reason`; `problems` lists the details
    when there are several (a CSV file names every bad row).
    """

    def __init__(self, reason: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problems = problems
