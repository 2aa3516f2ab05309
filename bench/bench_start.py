"""`monitor run` starting on a database of 1,000,000 enrolled patients: time to the
first /healthz 200 and the daemon's peak RSS, beside the same start on a database of
one patient and `SELECT count(*)` on the big one, measured in the same run.

Run: .venv/bin/python bench/bench_start.py [--quick] [--patients N]
Setup (not timed): bench_sweep's copied enrolment, nobody due (so the start-up sweep
finds nothing and the figure is the start itself). Goals (issue 10): a start like
`SELECT count(*)`, i.e. nothing that loads every patient, measured as: within 1.5x
of the one-patient start (imports, migrations check, scheduler, web); daemon RSS
< 250 MB.
Writes bench/results/start-<time>.json with the machine's description; exits 1 when a
goal is missed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_sweep import populate, quiet  # noqa: E402
from bench.harness import rss_mb  # noqa: E402
from bench.machine import machine, shown, write_result  # noqa: E402
from monitor.store.db import make_engine, upgrade  # noqa: E402

RSS_GOAL_MB, START_RATIO_GOAL = 250.0, 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(tmp: Path, db: Path) -> Path:
    config = tmp / "monitor.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{db}"
[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"
[channels.console]
kind = "console"
[recipients.oncall]
label = "On call"
contacts = [{{ channel = "console", address = "oncall" }}]
[groups]
oncall = ["oncall"]
[[routes]]
name = "all"
escalation = ["oncall"]
[escalation]
critical_ack_minutes = 600
delivery_failure_group = "oncall"
[daemon]
console_only = true
""")
    return config


def healthz_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_monitor(config: Path, timeout: float = 300) -> dict[str, float]:
    """Seconds from spawn to the first /healthz 200, and the peak RSS until then."""
    port = free_port()
    env = {**os.environ, "MONITOR_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--port", str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak, ready = 0.0, None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            peak = max(peak, rss_mb(proc.pid))
            if healthz_ok(port):
                ready = time.perf_counter() - t0
                break
            time.sleep(0.05)
        for _ in range(20):  # settle: what the running daemon holds, not just the start
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"to_healthz_s": ready if ready is not None else float("nan"), "rss_peak_mb": peak}


def count_ms(db: Path) -> float:
    conn = sqlite3.connect(db)
    t0 = time.perf_counter()
    conn.execute("SELECT count(*) FROM patients").fetchone()
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    return ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 patients")
    ap.add_argument("--patients", type=int)
    args = ap.parse_args(argv)
    quiet()
    n = args.patients or (20_000 if args.quick else 1_000_000)
    later = datetime.now(UTC) + timedelta(days=365)
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmpdir:
        configs = []
        for size in (1, n):
            tmp = Path(tmpdir) / str(size)
            tmp.mkdir()
            engine = make_engine(f"sqlite:///{tmp / 'start.db'}")
            upgrade(engine)
            populate(engine, size, 0, now=later)
            engine.dispose()
            configs.append(config_for(tmp, tmp / "start.db"))
        count = count_ms(Path(tmpdir) / str(n) / "start.db")
        small = start_monitor(configs[0])
        ours = start_monitor(configs[1])
    ratio = ours["to_healthz_s"] / small["to_healthz_s"]
    ok_start = ratio <= START_RATIO_GOAL
    ok_rss = ours["rss_peak_mb"] < RSS_GOAL_MB
    print(f"start with {n:,} patients enrolled (SQLite)")
    print(
        f"  to /healthz 200: {ours['to_healthz_s']:.2f} s  beside one patient's "
        f"{small['to_healthz_s']:.2f} s ({ratio:.2f}x, goal <= {START_RATIO_GOAL}x: "
        f"{'met' if ok_start else 'MISSED'}) and SELECT count(*) {count:.1f} ms"
    )
    print(
        f"  peak RSS {ours['rss_peak_mb']:.0f} MB, one patient's {small['rss_peak_mb']:.0f} MB "
        f"(goal < {RSS_GOAL_MB:.0f} MB): "
        f"{'met' if ok_rss else 'MISSED'}"
    )
    path = write_result(
        "start",
        {
            "machine": machine(),
            "patients": n,
            "monitor": ours,
            "one_patient": small,
            "ratio": ratio,
            "count_ms": count,
            "goals": {"start_ratio": START_RATIO_GOAL, "rss_mb": RSS_GOAL_MB},
            "met": {"start": ok_start, "rss": ok_rss},
        },
    )
    print(f"  written to {shown(path)}")
    return 0 if ok_start and ok_rss else 1


if __name__ == "__main__":
    sys.exit(main())
