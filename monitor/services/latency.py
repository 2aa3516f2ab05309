"""Value-to-send latency, as a Prometheus histogram kept by this process.

Measured for each alert's first notification (purpose `alert`) when the provider
accepts it: from the delivery's `created_at` (the commit that stored the value,
raised the alert and wrote its delivery, one transaction) to the settle. A value's
wait before that commit is what its ACK waits for. Quiet hours and retries count:
this is what a care team experiences, not what the code spends. Per process, like
any Prometheus counter: sum it across instances.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

# seconds: a stop alert should be out in well under a second; quiet hours are hours
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


@dataclass
class _Series:
    counts: list[int]
    total: float = 0.0
    n: int = 0


@dataclass
class Histogram:
    """Cumulative buckets per label set, thread-safe (the dispatcher and a scrape)."""

    buckets: tuple[float, ...] = BUCKETS
    _series: dict[tuple[tuple[str, str], ...], _Series] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        value = max(seconds, 0.0)
        with self._lock:
            series = self._series.setdefault(key, _Series([0] * (len(self.buckets) + 1)))
            series.counts[bisect_left(self.buckets, value)] += 1
            series.total += value
            series.n += 1

    def samples(self, name: str) -> list[tuple[str, dict[str, str], float]]:
        """(metric name, labels, value) lines: `_bucket` (cumulative, `le`), `_sum`, `_count`."""
        out: list[tuple[str, dict[str, str], float]] = []
        with self._lock:
            for key, series in sorted(self._series.items()):
                labels = dict(key)
                running = 0
                for bound, count in zip((*self.buckets, float("inf")), series.counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else repr(float(bound))
                    out.append((f"{name}_bucket", {**labels, "le": le}, running))
                out.append((f"{name}_sum", labels, series.total))
                out.append((f"{name}_count", labels, series.n))
        return out

    def reset(self) -> None:
        with self._lock:
            self._series.clear()


VALUE_TO_SEND = Histogram()
