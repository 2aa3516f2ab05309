"""Value-to-send latency, a Prometheus histogram kept by this process.

Observed for each alert's first notification (purpose `alert`) when the provider
accepts it: from the delivery's `created_at` (the commit that stored the value,
raised the alert and wrote its delivery, one transaction) to the settle. A value's
wait before that commit is what its ACK waits for. Quiet hours and retries count:
this is what a care team experiences, not what the code spends. Per process, like
any Prometheus counter: sum it across instances.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics

# `_created` series only double the exposition; nobody here graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# This process's own metrics; `monitor.services.metrics` appends them to each scrape.
PROCESS = CollectorRegistry(auto_describe=True)

# seconds: a stop alert should be out in well under a second; quiet hours are hours
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

VALUE_TO_SEND = Histogram(
    "labmonitor_value_to_send_seconds",
    "From the commit that raised an alert to the provider accepting its first "
    "notification, by channel and severity.",
    ["channel", "severity"],
    buckets=BUCKETS,
    registry=PROCESS,
)
