"""The new benchmarks at a tiny size, so they do not rot between the runs that
measure: each must set up, run the real path, judge every due patient or deliver
every alert, and write its result. Figures are not asserted (benchmarks are not
tests); what each counted is."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_burst, bench_latency, bench_start, bench_sweep, machine  # noqa: E402

PG = os.environ.get("MONITOR_TEST_PG_URL")


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Smoke runs write their JSON to a throw-away folder, not bench/results."""
    out = tmp_path / "results"
    monkeypatch.setattr(machine, "RESULTS", out)
    return out


def only_result(out: Path, prefix: str) -> dict[str, object]:
    files = sorted(out.glob(f"{prefix}-*.json"))
    assert len(files) == 1, files
    data: dict[str, object] = json.loads(files[0].read_text())
    assert "cpus" in data["machine"]  # type: ignore[operator]
    return data


def test_sweep_bench_judges_every_due_patient(results_in_tmp: Path) -> None:
    bench_sweep.main(["--sizes", "300", "600", "--due", "7"])
    data = only_result(results_in_tmp, "sweep-sqlite")
    sizes = data["sizes"]
    assert isinstance(sizes, list)
    for size in sizes:
        assert size["due"] == 7 and size["still_due_after"] == 0
        assert size["alerts_raised"] == 7  # each due patient was evaluated, not skipped
    assert data["met"]["all_judged"] is True  # type: ignore[index]


@pytest.mark.skipif(not PG, reason="MONITOR_TEST_PG_URL not set (scripts/test sets it)")
def test_sweep_bench_runs_on_postgresql(results_in_tmp: Path) -> None:
    bench_sweep.main(["--sizes", "100", "200", "--due", "3", "--db-url", str(PG)])
    data = only_result(results_in_tmp, "sweep-postgresql")
    assert data["met"]["all_judged"] is True  # type: ignore[index]


def test_start_bench_reaches_healthz(tmp_path: Path) -> None:
    """One start (main's second, baseline start doubles the time and adds no check)."""
    from monitor.store.db import make_engine, upgrade

    db = tmp_path / "start.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    bench_sweep.populate(engine, 50, 0)
    engine.dispose()
    ours = bench_start.start_monitor(bench_start.config_for(tmp_path, db), timeout=60)
    assert ours["to_healthz_s"] > 0 and ours["rss_peak_mb"] > 20


def test_latency_bench_delivers_every_stop_alert(results_in_tmp: Path) -> None:
    bench_latency.main(["--quick", "--seconds", "0.4"])
    data = only_result(results_in_tmp, "latency")
    phases = data["lab_monitor"]
    assert isinstance(phases, list) and len(phases) == 2
    for phase in phases:
        assert phase["offered"] >= 2
        assert phase["delivered"] == phase["offered"]
        assert phase["not_accepted"] == 0


def test_burst_bench_delivers_every_alert_timed_from_ready(results_in_tmp: Path) -> None:
    bench_burst.main(["--alerts", "30"])
    data = only_result(results_in_tmp, "burst")
    ours = data["lab_monitor"]
    assert isinstance(ours, dict)
    assert ours["delivered"] == 30
    # timed from the daemon's READY=1 (or its first delivery, if earlier), so the
    # start it reports is not inside the rate
    assert ours["start_to_ready_s"] > 0 and ours["start_to_first_s"] > 0
    assert ours["rate"] > ours["rate_with_start"] > 0
