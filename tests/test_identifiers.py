"""Identifiers as FHIR tokens: URI and OID systems can be enrolled and matched (issue 8,
point 3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from monitor.identifiers import (
    IdentifierError,
    format_identifier,
    parse_identifier,
    system_aliases,
)
from tests.conftest import CliRunner

NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{NHS}|9434765919", (NHS, "9434765919")),
        (
            "urn:oid:2.16.840.1.113883.2.1.4.1|9434765919",
            ("urn:oid:2.16.840.1.113883.2.1.4.1", "9434765919"),
        ),
        ("MRENTR:11111111110", ("MRENTR", "11111111110")),  # HL7 authority, unambiguous
        ("FHIR:Patient/pat2", ("FHIR", "Patient/pat2")),
        ("374736473647364", ("", "374736473647364")),
        ("LAB\\|A|12\\|3", ("LAB|A", "12|3")),
        ("|a:b", ("", "a:b")),
    ],
)
def test_tokens_are_read_and_written_back_the_same(text: str, expected: tuple[str, str]) -> None:
    assert parse_identifier(text) == expected
    assert parse_identifier(format_identifier(*expected)) == expected


@pytest.mark.parametrize("text", ["urn:oid:1.2.3:44", "https://x.org/id:5", "a|b|c", "SYS|"])
def test_an_ambiguous_identifier_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(IdentifierError):
        parse_identifier(text)


def test_an_oid_is_the_same_with_or_without_its_urn() -> None:
    assert set(system_aliases("urn:oid:2.16.840.1")) == {"urn:oid:2.16.840.1", "2.16.840.1"}
    assert set(system_aliases("2.16.840.1")) == {"urn:oid:2.16.840.1", "2.16.840.1"}
    assert system_aliases(NHS) == (NHS,)


def _enroll(cli: CliRunner, pid: str, *identifiers: str) -> int:
    start = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    args = ["enroll", pid, "--weight", "70", "--start", start, "--tpmt", "normal"]
    args += ["--baseline", "alt=20", "--baseline", "ast=20"]
    for ident in identifiers:
        args += ["--identifier", ident]
    return cli(*args).code


def test_enrol_with_a_uri_system_and_show_it_back(cli: CliRunner) -> None:
    assert _enroll(cli, "P-1", f"{NHS}|9434765919", "MRENTR:111") == 0
    shown = json.loads(cli("patient", "show", "P-1", "--json").out)["identifiers"]
    assert sorted(shown) == sorted([f"{NHS}|9434765919", "MRENTR|111"])


def test_an_oid_identifier_cannot_be_enrolled_twice_under_its_two_spellings(
    cli: CliRunner,
) -> None:
    assert _enroll(cli, "P-1", "urn:oid:2.16.840.1.113883.2.1.4.1|943") == 0
    r = cli(
        "enroll",
        "P-2",
        "--weight",
        "70",
        "--tpmt",
        "normal",
        "--baseline",
        "alt=20",
        "--baseline",
        "ast=20",
        "--identifier",
        "2.16.840.1.113883.2.1.4.1|943",
    )
    assert r.code != 0 and "already belongs to patient P-1" in r.err


def test_an_ambiguous_identifier_is_refused_at_enrolment(cli: CliRunner) -> None:
    assert _enroll(cli, "P-1", "urn:oid:1.2.3:44") != 0
