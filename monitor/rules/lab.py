"""Missed-lab deadlines: a liver panel that did not arrive in time."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor.core.domain import Finding
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState
from monitor.core.timeline import DAY, HOUR, deadline
from monitor.rules import rule
from monitor.rules.context import finding, fmt


def span(td: timedelta) -> str:
    """A grace or gap in words a nurse reads without arithmetic: "1 day", "12 hours"."""
    if td < DAY:
        n, unit = td / HOUR, "hour"
    else:
        n, unit = td / DAY, "day"
    return f"{fmt(n)} {unit}{'' if n == 1 else 's'}"


@rule("lab.overdue")
def overdue(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    dl = deadline(state, protocol)
    if dl is None or now < dl.fire_at:
        return []
    since = (
        f"the (re)start on {dl.anchor_at:%Y-%m-%d}"
        if state.latest_panel() is None
        else f"the last liver panel on {dl.anchor_at:%Y-%m-%d}"
    )
    if dl.asked_by is not None:
        asked = dl.asked_by
        within = asked.repeat_by - asked.at if asked.repeat_by else DAY
        when = (
            f"urgently (within {fmt(within / HOUR)} hours)"
            if within <= DAY
            else f"within {fmt(within / DAY)} days"
        )
        message = (
            f"Repeat liver panel overdue: {asked.rule} on {asked.at:%Y-%m-%d %H:%M} UTC asked "
            f"for repeat LFTs {when}, due {dl.due:%Y-%m-%d %H:%M} UTC (grace "
            f"{span(dl.grace)}); none since {since}. Arrange LFTs now; do not "
            "escalate the dose until they are back."
        )
    else:
        message = (
            f"Liver panel overdue: none since {since}; it was due {dl.due:%Y-%m-%d %H:%M} UTC "
            f"(every {span(dl.due - dl.anchor_at)}, grace {span(dl.grace)}). Arrange LFTs "
            "now; do not escalate the dose until they are back."
        )
    return [
        finding(
            state,
            protocol,
            "lab.overdue",
            "warning",
            dl.anchor_key,
            message,
            thresholds={"gap_days": (dl.due - dl.anchor_at) / DAY, "grace_days": dl.grace / DAY},
        )
    ]
