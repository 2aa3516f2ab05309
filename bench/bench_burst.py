"""A burst of distinct stop alerts, end to end to a local webhook receiver, beside
Prometheus Alertmanager fed the same alerts and delivering to the same receiver.

Run: .venv/bin/python bench/bench_burst.py [--alerts 20000 | --quick]
What is timed: for lab-monitor, from the daemon's READY=1 (sd_notify: started, with N
committed stop alerts each with its delivery in the outbox, the sending side) to the
receiver holding all N (the process start to READY is printed beside it, and the rate
with it included); for Alertmanager, already running (in memory, clustering off, group_wait 0,
group_by ['...']), from the first v2 API POST to the receiver holding all N.
Goals: all delivered; our rate >= Alertmanager's in the same run; daemon RSS < 250 MB.
Writes bench/results/burst-<time>.json with the machine's description.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import Receiver, alertmanager, post_alerts, rss_mb  # noqa: E402
from bench.machine import machine, shown, write_result  # noqa: E402
from monitor.routing import parse_routing  # noqa: E402
from monitor.services.outbox import enqueue  # noqa: E402
from monitor.settings import load_settings  # noqa: E402
from monitor.store.db import make_engine, session_scope, upgrade  # noqa: E402
from monitor.store.models import AlertRow  # noqa: E402

RSS_GOAL_MB = 250.0


def seed(db: str, config: Path, n: int) -> None:
    settings = load_settings(config)
    routing = parse_routing(settings.raw)
    engine = make_engine(db)
    upgrade(engine)
    now = datetime.now(UTC)
    for start in range(0, n, 1000):
        with session_scope(engine) as s:
            for i in range(start, min(n, start + 1000)):
                alert = AlertRow(
                    code=f"B{i:06d}",
                    patient_id=None,
                    rule="stop.transaminase",
                    severity="critical",
                    key=f"bench:{i}",
                    at=now,
                    raised_at=now,
                    message=f"ALT 640 U/L above the stop line. STOP azathioprine (bench {i}).",
                    details={},
                    profile="azathioprine-seed",
                    group_id=f"bench-{i}",
                )
                s.add(alert)
                s.flush()
                enqueue(s, [alert], routing, now)
    engine.dispose()


def run_monitor(receiver: Receiver, n: int, tmp: Path) -> dict[str, float]:
    db = f"sqlite:///{tmp / 'bench.db'}"
    config = tmp / "monitor.toml"
    config.write_text(f"""
[database]
url = "{db}"
[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"
[channels.hook]
kind = "webhook"
url = "{receiver.url}/monitor"
max_concurrency = 32
[recipients.oncall]
label = "On call"
contacts = [{{ channel = "hook", address = "oncall" }}]
[groups]
oncall = ["oncall"]
[[routes]]
name = "all"
escalation = ["oncall"]
[escalation]
critical_ack_minutes = 600
delivery_failure_group = "oncall"
[dispatch]
# A webhook-only service tuned for bursts: each claim costs a fixed ~10 ms beside its
# rows (its statements wait for the GIL while the loop sends), so bigger claims go
# faster (2026-12-08, alternated: 50 -> 0.70x of Alertmanager, 200 -> 0.85x, 800 ->
# 0.94-1.00x). With one channel there is no other channel for its claims to hold
# back (README, "Dispatcher").
batch = 800
[daemon]
sweep_seconds = 3600
escalation_seconds = 3600
""")
    seed(db, config, n)
    # READY=1 arrives here: the daemon is up, as Alertmanager is before its first POST
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    notify.setblocking(False)
    env = {
        **os.environ,
        "MONITOR_WEBHOOK_SECRET": "bench",
        "MONITOR_LOG_LEVEL": "WARNING",
        "NOTIFY_SOCKET": str(tmp / "notify.sock"),
    }
    t0 = time.perf_counter()
    ready: float | None = None
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run", "--no-web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    first: float | None = None
    deadline = time.monotonic() + 600
    while receiver.count("monitor") < n and time.monotonic() < deadline:
        peak = max(peak, rss_mb(proc.pid))
        while ready is None:
            try:
                if b"READY=1" in notify.recv(4096):
                    ready = time.perf_counter() - t0
            except BlockingIOError:
                break
        if first is None and receiver.count("monitor"):
            first = time.perf_counter() - t0
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    notify.close()
    if ready is None:
        raise SystemExit("the daemon never sent READY=1")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    got = receiver.count("monitor")
    return {
        "delivered": got,
        # from READY, or from the first delivery if one came before it
        "seconds": elapsed - min(ready, first or ready),
        "rate": got / (elapsed - min(ready, first or ready)),
        "start_to_ready_s": ready,
        "start_to_first_s": first or elapsed,
        "rate_with_start": got / elapsed,
        "rss_peak_mb": peak,
    }


def run_alertmanager(receiver: Receiver, n: int, tmp: Path) -> dict[str, float] | None:
    with alertmanager(receiver, tmp) as api:
        if api is None:
            return None
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            post_alerts(api, [f"B{i:06d}" for i in range(start, min(n, start + 500))])
        deadline = time.monotonic() + 300
        while receiver.count("am") < n and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
    got = receiver.count("am")
    return {"delivered": got, "seconds": elapsed, "rate": got / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, help="default 20,000 (the issue's size)")
    parser.add_argument("--quick", action="store_true", help="500 alerts")
    args = parser.parse_args(argv)
    n = args.alerts or (500 if args.quick else 20_000)
    receiver = Receiver().start()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ours = run_monitor(receiver, n, tmp)
        theirs = run_alertmanager(receiver, n, tmp)
    receiver.shutdown()
    ok = True

    def line(what: str, value: str, limit: str, good: bool) -> None:
        nonlocal ok
        ok &= good
        print(f"{'ok  ' if good else 'MISS'} {what:<44} {value:>16}   limit: {limit}")

    print(f"burst of {n:,} distinct stop alerts to a local webhook receiver")
    line("lab-monitor delivered", f"{ours['delivered']:,.0f}", f"all {n:,}", ours["delivered"] == n)
    print(
        f"     (process start to READY {ours['start_to_ready_s']:.2f} s, to the first delivery"
        f" {ours['start_to_first_s']:.2f} s, not in the rate; with it:"
        f" {ours['rate_with_start']:,.0f}/s)"
    )
    line(
        "lab-monitor daemon RSS peak",
        f"{ours['rss_peak_mb']:.0f} MB",
        "< 250 MB",
        ours["rss_peak_mb"] < RSS_GOAL_MB,
    )
    if theirs is None:
        line("lab-monitor rate", f"{ours['rate']:,.0f}/s", "Alertmanager: not installed", False)
    else:
        line(
            "Alertmanager delivered",
            f"{theirs['delivered']:,.0f}",
            f"all {n:,}",
            theirs["delivered"] == n,
        )
        line(
            "lab-monitor rate",
            f"{ours['rate']:,.0f}/s",
            f">= Alertmanager {theirs['rate']:,.0f}/s ({ours['rate'] / theirs['rate']:.2f}x)",
            ours["rate"] >= theirs["rate"],
        )
    path = write_result(
        "burst",
        {
            "alerts": n,
            "machine": machine(),
            "lab_monitor": ours,
            "alertmanager": theirs,
            "goals_met": ok,
        },
    )
    print(f"     written to {shown(path)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
