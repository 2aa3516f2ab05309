"""Times as people at the site read them: the site's zone with its offset.

Rules write their deadlines as "YYYY-MM-DD HH:MM UTC" (the core knows no site);
what reaches a person, on a page or in an SMS or email, says the same moment in the
site's zone with the offset ("2026-03-02 09:00 +00:00"), never an abbreviation
such as BST that a reader must decode.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

_ISO_UTC = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}) UTC")


def local_time(value: datetime | None, tz: tzinfo) -> str:
    """`2026-03-02 09:00 +01:00`: the site's zone with its offset, never ambiguous."""
    if value is None:
        return "-"
    local = value.astimezone(tz)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M ") + (f"{offset[:3]}:{offset[3:]}" if offset else "")


def localise_message(text: str, tz: tzinfo) -> str:
    """A rule's sentence with its "YYYY-MM-DD HH:MM UTC" times in the site's zone."""

    def swap(m: re.Match[str]) -> str:
        at = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}").replace(tzinfo=UTC)
        return local_time(at, tz)

    return _ISO_UTC.sub(swap, text)
