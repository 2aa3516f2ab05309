"""Readable pages: thresholds in words with units, local times with their offset, the
message's UTC times in the site's zone, "overdue by N days", and why there is no panel."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from monitor.web.wording import local_time, localise_message, threshold_label, with_unit
from tests.web.conftest import Console, signed_in
from tests.web.test_search import _enroll

LONDON = ZoneInfo("Europe/London")


def test_thresholds_read_as_words_with_units() -> None:
    base = {"alt": 22.0}
    assert threshold_label("alt_baseline_multiple_limit", 66, base) == "ALT 3x baseline (66 U/L)"
    assert threshold_label("ast_baseline_multiple_limit", 60, {}) == (
        "AST multiple of baseline (60 U/L)"
    )
    assert threshold_label("alt_absolute_limit", 300, base) == "ALT fixed limit (300 U/L)"
    assert threshold_label("bilirubin_limit", 42, base) == "bilirubin stop line (42 µmol/L)"
    assert threshold_label("alt_grade1_limit", 33, base) == "ALT CTCAE grade 1 from 33 U/L"
    assert threshold_label("max_dose_mg", 150, base) == "maximum dose 150 mg/day"
    assert threshold_label("new_thing", 2, base) == "new thing: 2"
    assert with_unit("bilirubin", 12) == "12 µmol/L"


def test_times_carry_the_site_offset_in_pages_and_messages() -> None:
    summer = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert local_time(summer, LONDON) == "2026-06-01 09:00 +01:00"
    assert local_time(datetime(2026, 1, 5, 8, 0, tzinfo=UTC), LONDON) == "2026-01-05 08:00 +00:00"
    text = "it was due 2026-06-01 08:00 UTC (every 4 days)"
    assert localise_message(text, LONDON) == "it was due 2026-06-01 09:00 +01:00 (every 4 days)"


def test_patient_page_says_overdue_by_and_why_there_is_no_panel(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/patients/P-200").text  # last panel day 4, due every 4 days, now day 10
    badge = re.search(r'id="overdue">([^<]*)<', page)
    assert badge and badge.group(1) == "liver tests overdue by 2 days"
    assert "ALT 45 U/L" in page and "ULN" in page
    _enroll(console, "P-NEW")
    fresh = client.get("/patients/P-NEW").text
    assert 'id="no-panel">none since the (re)start on' in fresh
    assert "last panel -" not in fresh
