"""Parse-time bounds: a pathological message is refused before a parser spends on it.

An HL7 field of a million repeat separators takes the `hl7` library seconds and
gigabytes; a JSON document nested ten thousand deep reaches the interpreter's
recursion limit. Each bound is checked with plain string counts (linear, no
allocation per separator) *before* the message is handed to a parser, and a message
over a bound becomes a `ParseError` whose reason says which bound and by how much;
the caller quarantines it like any payload that cannot be read.

HL7 bounds apply to each message of a batch on its own (a batch file of many
messages is fine; one message that is too large is quarantined alone). The FHIR
bounds apply to the whole payload. The defaults are far above any real lab message
(a full hepatic panel is a few kilobytes and under 30 segments) and far below what
hurts; they are set in the ``[ingest]`` table of monitor.toml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from monitor.sources.model import ParseError

MiB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """The largest message each parser reads; every field is a positive count."""

    max_bytes: int = 4 * MiB  # one HL7 message (UTF-8)
    max_segments: int = 2_000  # one HL7 message
    max_separators_per_segment: int = 10_000  # |, ^, ~, & in one segment
    max_separators_per_message: int = 50_000  # |, ^, ~, & in one message
    fhir_max_bytes: int = 10 * MiB  # one FHIR payload (as [web] fhir_max_body_bytes)
    fhir_max_depth: int = 64  # JSON objects and arrays nested in one FHIR payload

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ingest.{f.name} must be a whole number of at least 1")

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> ParseLimits:
        """The limits of a config's ``[ingest]`` table (already checked by the schema)."""
        table = raw.get("ingest") or {}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(table).items() if k in known})


DEFAULT_LIMITS = ParseLimits()

_KINDS = ("field", "component", "repeat", "subcomponent")


def _size(text: str) -> int:
    """The UTF-8 length of a text (a lone surrogate counts as the 3 bytes it would take)."""
    return len(text.encode("utf-8", "surrogatepass"))


def check_hl7(segments: list[str], limits: ParseLimits) -> None:
    """Refuse one HL7 message (its segments, MSH first) that is over a bound."""
    if len(segments) > limits.max_segments:
        raise ParseError(
            f"the message has {len(segments):,} segments; the limit is {limits.max_segments:,}"
        )
    chars = sum(len(s) + 1 for s in segments)  # a CR after each segment
    if chars * 4 > limits.max_bytes:  # UTF-8 takes at most 4 bytes a character
        size = chars if chars > limits.max_bytes else sum(_size(s) + 1 for s in segments)
        if size > limits.max_bytes:
            raise ParseError(f"the message is {size:,} bytes; the limit is {limits.max_bytes:,}")
    header = segments[0] if segments else ""
    if len(header) < 8:
        return  # not an HL7 header: the parser says so
    separators = header[3:8]  # field, component, repeat, escape, subcomponent
    counted = (separators[0], separators[1], separators[2], separators[4])
    total = 0
    for number, segment in enumerate(segments, start=1):
        counts = [segment.count(c) for c in counted]
        here = sum(counts)
        if here > limits.max_separators_per_segment:
            most = max(range(len(counts)), key=lambda i: counts[i])
            tag = "".join(ch for ch in segment[:3] if ch.isalnum())
            what = (
                f"{counts[most]:,} {_KINDS[most]} separators"
                if counts[most] > limits.max_separators_per_segment
                else f"{here:,} separators"
            )
            raise ParseError(
                f"segment {number}{f' ({tag})' if tag else ''} has {what}; "
                f"the limit is {limits.max_separators_per_segment:,}"
            )
        total += here
    if total > limits.max_separators_per_message:
        raise ParseError(
            f"the message has {total:,} separators; "
            f"the limit is {limits.max_separators_per_message:,}"
        )


def check_fhir_size(payload: str | bytes, limits: ParseLimits) -> None:
    """Refuse a FHIR payload larger than the bound, before it is read as JSON."""
    size = len(payload) if isinstance(payload, bytes) else _size(payload)
    if size > limits.fhir_max_bytes:
        raise ParseError(
            f"the FHIR payload is {size:,} bytes; the limit is {limits.fhir_max_bytes:,}"
        )


def check_json_depth(data: Any, limits: ParseLimits) -> None:
    """Refuse JSON nested deeper than the bound (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limits.fhir_max_depth:
            raise ParseError(
                f"the JSON is nested more than {limits.fhir_max_depth} deep; that is the limit"
            )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
