"""Patient identifiers as FHIR tokens: ``SYSTEM|VALUE``, compared as literals.

Nearly every real identifier system is a URI (``https://fhir.nhs.uk/Id/nhs-number``)
or an OID (``urn:oid:2.16.840.1.113883.2.1.4.1``), so a colon cannot separate the
system from the value. The FHIR token syntax can: ``system|value``, with ``\\|`` for a
bar inside either part. The older ``AUTHORITY:VALUE`` form (an HL7 assigning
authority such as ``MRENTR:11111111110``) is still read where it is unambiguous:
one colon and no URI-looking authority. A bare value has no system.
"""

from __future__ import annotations

import re

_URI_LIKE = re.compile(r"^(urn|https?|oid|uuid)$", re.IGNORECASE)
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class IdentifierError(ValueError):
    """An identifier that cannot be read without guessing where the system ends."""


def _split_token(text: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def parse_identifier(text: str) -> tuple[str, str]:
    """(system, value) of ``SYSTEM|VALUE``, ``AUTHORITY:VALUE`` or a bare ``VALUE``."""
    text = text.strip()
    if "|" in text:
        parts = _split_token(text)
        if len(parts) != 2:
            raise IdentifierError(
                f"{text!r}: a FHIR token has one '|' between system and value "
                "(write a '|' inside either part as '\\|')"
            )
        system, value = parts[0].strip(), parts[1].strip()
    elif ":" in text:
        system, _, value = text.partition(":")
        if ":" in value or "/" in system or _URI_LIKE.match(system):
            raise IdentifierError(
                f"{text!r}: cannot tell where the system ends; write it as SYSTEM|VALUE "
                "(e.g. https://fhir.nhs.uk/Id/nhs-number|9434765919)"
            )
    else:
        system, value = "", text
    if not value:
        raise IdentifierError(f"{text!r}: the identifier has no value")
    return system, value


def format_identifier(system: str, value: str) -> str:
    """The token a person can paste back into `--identifier`."""

    def esc(part: str) -> str:
        return part.replace("\\", "\\\\").replace("|", "\\|")

    if not system:
        return f"|{esc(value)}" if "|" in value or ":" in value else value
    return f"{esc(system)}|{esc(value)}"


def system_aliases(system: str) -> tuple[str, ...]:
    """The spellings of one system: an OID is the same with or without ``urn:oid:``."""
    if system.lower().startswith("urn:oid:") and _OID.match(system[8:]):
        return (system, system[8:])
    if _OID.match(system):
        return (system, f"urn:oid:{system}")
    return (system,)
