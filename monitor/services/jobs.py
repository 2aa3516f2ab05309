"""How the scheduler's jobs keep time: a counter the metrics can read.

`STATS` is fed by an APScheduler listener in the daemon: every run, every run that
started late (more than `LATE_AFTER_S` after its time), every run APScheduler
skipped (a missed run or one dropped because the previous was still going) and
the worst lateness seen, per job id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LATE_AFTER_S = 1.0


@dataclass
class JobCounts:
    runs: int = 0
    late: int = 0
    missed: int = 0
    max_late_s: float = 0.0


@dataclass
class JobStats:
    jobs: dict[str, JobCounts] = field(default_factory=dict)

    def of(self, job_id: str) -> JobCounts:
        return self.jobs.setdefault(job_id, JobCounts())

    def ran(self, job_id: str, late_s: float) -> None:
        counts = self.of(job_id)
        counts.runs += 1
        if late_s > LATE_AFTER_S:
            counts.late += 1
        counts.max_late_s = max(counts.max_late_s, late_s)

    def skipped(self, job_id: str) -> None:
        self.of(job_id).missed += 1


STATS = JobStats()
