"""Patient SMS templates: the shipped files load, fit two segments, and carry no
clinical detail; a file that would break either rule is refused at load."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.patient_sms import (
    KINDS,
    TemplateError,
    load_all,
    load_templates,
    segments,
)
from tests.helpers import ROOT

MESSAGES = ROOT / "config" / "messages"
CLINIC = "Rheumatology, St Elsewhere"
HELP = "+441632960000"
CLINICAL = re.compile(
    r"\b(azathioprine|ALT|AST|ALP|GGT|bilirubin|dose|mg|TPMT|liver|hepat\w*|results?)\b"
    r"|P-\d|\d+(\.\d+)?\s*x\b|ULN",
    re.IGNORECASE,
)


def test_segment_counting() -> None:
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2
    assert segments("a" * 306) == 2 and segments("a" * 307) == 3
    assert segments("[" * 80) == 1 and segments("[" * 81) == 2  # extension chars count two
    assert segments("ê" * 70) == 1 and segments("ê" * 71) == 2  # UCS-2
    assert segments("ê" * 134) == 2 and segments("ê" * 135) == 3


def test_shipped_files_load_unapproved() -> None:
    ts = load_all(MESSAGES, CLINIC, HELP, ("en", "fr"))
    assert set(ts) == {"en", "fr"} and not any(t.approved for t in ts.values())
    assert (
        ts["en"].render("reminder", date(2026, 3, 12))
        == "Your blood test for Rheumatology, St Elsewhere is due by Thursday 12 March. "
        "Reply HELP for the clinic's number."
    )
    assert HELP in ts["en"].render("help")


@settings(max_examples=60, deadline=None)
@given(
    lang=st.sampled_from(["en", "fr"]),
    kind=st.sampled_from(KINDS),
    due=st.dates(date(2026, 1, 1), date(2030, 12, 31)),
    clinic=st.text(st.sampled_from("abcdefgh ,-'"), min_size=1, max_size=30),
)
def test_no_clinical_detail_and_two_segments(lang: str, kind: str, due: date, clinic: str) -> None:
    """Whatever the date and clinic name, a patient SMS says nothing clinical."""
    t = load_all(MESSAGES, clinic, HELP, (lang,))[lang]
    text = t.render(kind, due)
    assert not CLINICAL.search(text.replace(clinic, "")), text
    assert segments(text) <= 2


def _write(tmp_path: Path, **messages: str) -> Path:
    src = (MESSAGES / "patient-sms.en.toml").read_text(encoding="utf-8")
    head, _ = src.split("[messages]")
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in messages.items()]
    base = {k: "Hello from {clinic}." for k in KINDS if k not in messages}
    lines += [f'{k} = "{v}"' for k, v in base.items()]
    path = tmp_path / "patient-sms.en.toml"
    path.write_text(head + "[messages]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_template_over_two_segments_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, reminder="Due by {date}. " + "x" * 300)
    with pytest.raises(TemplateError, match=r"messages.reminder: 3 SMS segments.*GSM-7"):
        load_templates(path, CLINIC, HELP)
    path = _write(tmp_path, reminder="Prévue le {date}, à côté. " + "ê" * 110)
    with pytest.raises(TemplateError, match=r"messages.reminder: 3 SMS segments.*UCS-2"):
        load_templates(path, CLINIC, HELP)


def test_a_long_clinic_name_can_push_a_template_over(tmp_path: Path) -> None:
    path = _write(tmp_path)
    load_templates(path, CLINIC, HELP)
    with pytest.raises(TemplateError, match="segments"):
        load_templates(path, "C" * 320, HELP)


@pytest.mark.parametrize("field", ["patient", "alt", "dose_mg", "name", "0"])
def test_a_clinical_placeholder_is_refused(tmp_path: Path, field: str) -> None:
    path = _write(tmp_path, recall="Your {" + field + "} is due {date}.")
    with pytest.raises(TemplateError, match="no clinical detail"):
        load_templates(path, CLINIC, HELP)


def test_dates_render_in_each_language() -> None:
    ts = load_all(MESSAGES, CLINIC, HELP, ("en", "fr"))
    d = date(2026, 12, 3)
    for offset in range(7):
        day = d + timedelta(days=offset)
        assert ts["en"].format_date(day).split()[0] == day.strftime("%A")
    assert ts["fr"].format_date(date(2026, 8, 15)) == "samedi 15 aout"
