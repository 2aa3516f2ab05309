"""What reaches a person says times in the site's zone with the offset, as the console
does: the SMS and the email of an alert, from the rule's "... UTC" sentence."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from monitor.routing import parse_routing
from monitor.services.outbox import compose
from monitor.store.models import AlertRow

LONDON = ZoneInfo("Europe/London")


def alert(at: datetime) -> AlertRow:
    return AlertRow(
        id=1,
        code="ABC123",
        patient_id="P-1",
        rule="lab.overdue",
        severity="warning",
        key="due:x",
        at=at,
        raised_at=at,
        message="LFTs overdue: due 2026-06-01 08:00 UTC (grace 1 day). Take blood today.",
        details={},
        profile="azathioprine-seed@1",
        group_id="g1",
    )


def test_sms_and_email_say_the_sites_time_with_its_offset() -> None:
    _subject, text, body = compose([alert(datetime(2026, 6, 2, 8, 0, tzinfo=UTC))], tz=LONDON)
    assert "2026-06-01 09:00 +01:00" in text and "UTC" not in text
    assert "at 2026-06-02 09:00 +01:00" in body
    assert "2026-06-01 09:00 +01:00" in body and "UTC" not in body


def test_winter_times_carry_the_zero_offset() -> None:
    a = alert(datetime(2026, 1, 5, 8, 0, tzinfo=UTC))
    a.message = "LFTs overdue: due 2026-01-04 08:00 UTC (grace 1 day)."
    _, text, _ = compose([a], tz=LONDON)
    assert "2026-01-04 08:00 +00:00" in text


def test_the_site_zone_comes_from_web_then_quiet_hours() -> None:
    base = {"channels": {"console": {"kind": "console"}}}
    assert parse_routing({**base, "web": {"timezone": "Europe/Paris"}}).site_tz == ZoneInfo(
        "Europe/Paris"
    )
    quiet = {"start": "21:00", "end": "07:00", "timezone": "Europe/London"}
    assert parse_routing({**base, "quiet_hours": quiet}).site_tz == LONDON
    assert parse_routing(base).site_tz in (UTC, ZoneInfo("UTC"))
