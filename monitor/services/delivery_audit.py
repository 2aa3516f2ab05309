"""The delivery auditor: every alert raised is delivered, failed, or within its retry window.

A gap is an alert the outbox should have sent and has not, for longer than
`[watch] delivery_gap_minutes`:

- a delivery still `pending` that long after it was due (the dispatcher is not
  running, or a channel is starved);
- a delivery left in `sending` that long after its claim lapsed (a process died
  mid-send and nobody settled it);
- an alert with no delivery at all (a group with no members, an enqueue that never
  happened) and not held back by a silence.

Each gap raises `system.delivery_gap` once (keyed by the delivery and its state, or
the alert), all gaps of one run together as one notification, critical when the
alert that is not getting out is critical. Failed deliveries are not gaps: they
already raised `delivery.failed`. The auditor's own alerts are not audited (a gap
about a gap would repeat every run).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from monitor.store.models import AlertRow, DeliveryRow

from .service_alert import ServiceAlert

RULE = "system.delivery_gap"
LOOK_BACK = timedelta(days=7)  # alerts older than this are not searched for missing deliveries


def delivery_gaps(session: Session, now: datetime, gap: timedelta) -> list[ServiceAlert]:
    found: list[ServiceAlert] = []
    stuck = session.exec(
        select(DeliveryRow, AlertRow)
        .where(
            DeliveryRow.lead_alert_id == AlertRow.id,
            AlertRow.rule != RULE,
            col(DeliveryRow.state).in_(["pending", "sending"]),
        )
        .order_by(col(DeliveryRow.id))
    )
    for delivery, alert in stuck:
        if delivery.state == "pending":
            late_since = delivery.next_attempt_at
            what = "is still waiting to be sent"
        else:
            late_since = delivery.claimed_until or delivery.updated_at
            what = "was left half-sent (its sender's claim lapsed)"
        if late_since > now - gap:
            continue
        found.append(
            ServiceAlert(
                rule=RULE,
                severity="critical" if alert.severity == "critical" else "warning",
                key=f"gap:delivery:{delivery.id}:{delivery.state}",
                message=(
                    f"Alert {alert.code} ({alert.rule}, {alert.severity}"
                    f"{', patient ' + alert.patient_id if alert.patient_id else ''}) {what}: "
                    f"delivery {delivery.id} to {delivery.recipient} due since "
                    f"{late_since:%Y-%m-%d %H:%M} UTC. Check that the service is running and "
                    f"the channel works (`monitor doctor`); `monitor alerts show {alert.code}`."
                ),
                details={
                    "alert": alert.code,
                    "delivery": delivery.id,
                    "state": delivery.state,
                    "recipient": delivery.recipient,
                    "due_since": late_since.isoformat(),
                },
            )
        )
    undelivered = session.exec(
        select(AlertRow)
        .where(
            AlertRow.rule != RULE,
            col(AlertRow.raised_at) >= now - LOOK_BACK,
            col(AlertRow.raised_at) <= now - gap,
            col(AlertRow.silenced_by).is_(None),
            ~select(DeliveryRow.id).where(DeliveryRow.group_id == AlertRow.group_id).exists(),
        )
        .order_by(col(AlertRow.id))
    )
    for alert in undelivered:
        found.append(
            ServiceAlert(
                rule=RULE,
                severity="critical" if alert.severity == "critical" else "warning",
                key=f"gap:alert:{alert.code}",
                message=(
                    f"Alert {alert.code} ({alert.rule}, {alert.severity}"
                    f"{', patient ' + alert.patient_id if alert.patient_id else ''}) raised "
                    f"{alert.raised_at:%Y-%m-%d %H:%M} UTC was never sent to anyone: its route "
                    f"({alert.route or 'none'}) reached no recipient. Fix the route's groups and "
                    f"tell its people; `monitor alerts show {alert.code}`."
                ),
                details={"alert": alert.code, "route": alert.route},
            )
        )
    return found
