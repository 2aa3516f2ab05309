"""Lab sources: parse HL7 v2, FHIR R4 and CSV into `LabMessage`s, pure and store-free.

`parse` is the one call the CLI (`monitor ingest PATH [--format]`), the MLLP
listener and the FHIR endpoint make; `detect_format` picks the format of a file.
What comes back is judged by `LabMessage.usable`: usable messages go to intake,
the rest to quarantine with `quarantine_reason`. A payload that cannot be read at
all raises `ParseError`, which the caller quarantines whole.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from monitor.sources.csv_file import parse_csv
from monitor.sources.fhir import parse_fhir
from monitor.sources.hl7v2 import parse_batch
from monitor.sources.limits import DEFAULT_LIMITS, ParseLimits
from monitor.sources.mapping import Mapping, MappingError, default_mapping, load_mapping
from monitor.sources.model import (
    Identifier,
    LabMessage,
    Observation,
    ParseError,
    PatientRef,
    Problem,
    SourceCode,
)


# The `hl7` library logs raw field values (a whole field on a bad escape, a segment
# before MSH) at WARNING and ERROR, under loggers named by its files' paths. No message
# content may reach a log: those loggers are switched off, and any under "hl7" too.
def _silence_hl7() -> None:
    import hl7.containers
    import hl7.util

    names = ["hl7", hl7.util.__file__, hl7.containers.__file__]
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
        logger.disabled = True
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


_silence_hl7()

Format = Literal["hl7", "fhir", "csv"]
FORMATS: tuple[str, ...] = ("hl7", "fhir", "csv")
_EXTENSIONS: dict[str, Format] = {
    ".hl7": "hl7",
    ".er7": "hl7",
    ".oru": "hl7",
    ".json": "fhir",
    ".fhir": "fhir",
    ".csv": "csv",
    ".tsv": "csv",
}

__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "Format",
    "Identifier",
    "LabMessage",
    "Mapping",
    "MappingError",
    "Observation",
    "ParseError",
    "ParseLimits",
    "PatientRef",
    "Problem",
    "SourceCode",
    "default_mapping",
    "detect_format",
    "load_mapping",
    "parse",
]


def _text(payload: bytes | str, format: Format) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        if format == "hl7":
            # HL7 v2 predates UTF-8; Latin-1 reads any byte, and the common
            # European senders use it (MSH-18 8859/1).
            return payload.decode("latin-1")
        raise ParseError(f"the {format.upper()} payload is not UTF-8 text") from None


def parse(
    payload: bytes | str,
    format: Format,
    *,
    mapping: Mapping | None = None,
    assume_tz: str = "UTC",
    source_name: str = "payload",
    limits: ParseLimits = DEFAULT_LIMITS,
) -> list[LabMessage]:
    """Parse a payload in `format`; every message comes back, usable or not.

    HL7: every message of a batch or file (one that is not HL7, or over `limits`,
    comes back quarantined). FHIR: one message per patient, or `ParseError` when the
    payload is over `limits`. CSV: one message per patient, or `ParseError` listing
    every bad cell. `assume_tz` is the timezone of times sent without an offset.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r} (one of {', '.join(FORMATS)})")
    if format == "fhir":
        return parse_fhir(payload, mapping=mapping, assume_tz=assume_tz, limits=limits)
    text = _text(payload, format)
    if format == "csv":
        return parse_csv(text, source_name=source_name, mapping=mapping, assume_tz=assume_tz)
    messages = parse_batch(text, mapping=mapping, assume_tz=assume_tz, limits=limits)
    if not messages:
        raise ParseError("no HL7 message in the payload")
    return messages


def detect_format(path: str | Path | None, text: str) -> Format:
    """The format of a file, from its content first and its extension second.

    Raises `ParseError` when neither tells (the CLI then asks for --format).
    """
    head = text.lstrip("\ufeff \t\r\n\x0b")[:4096]
    if head[:3] in ("MSH", "FHS", "BHS") and len(head) > 3 and not head[3].isalnum():
        return "hl7"
    if head.startswith("{"):
        return "fhir"
    first_line = head.split("\n", 1)[0].lower()
    if "patient_id" in first_line and any(d in first_line for d in (",", ";", "\t")):
        return "csv"
    if path is not None:
        suffix = Path(path).suffix.lower()
        if suffix in _EXTENSIONS:
            return _EXTENSIONS[suffix]
    name = str(path) if path is not None else "the input"
    raise ParseError(
        f"cannot tell the format of {name}: not HL7 (MSH...), FHIR JSON ({{...}}) "
        "or CSV with a patient_id column; give --format"
    )
