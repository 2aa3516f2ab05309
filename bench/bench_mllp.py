"""MLLP with ACK after commit, beside a bare `hl7.mllp` echo, same client, same run.

Run: .venv/bin/python bench/bench_mllp.py [--messages 4000] [--connections 8]
What is timed: N ORU^R01 messages (4 liver values each, enrolled patients) sent over
C connections, each connection waiting for its ACK before the next message (as an
interface engine does), to (a) an asyncio server on `hl7.mllp` that answers each
message with `create_ack()` and stores nothing, and (b) `monitor run` with its MLLP
source, which ACKs only after the group writer's commit. Rate and ACK p50/p99.
Goal (issue 10): lab-monitor >= 80% of the bare echo's rate.
Writes bench/results/mllp-<time>.json; exits 1 when the goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hl7  # noqa: E402
import hl7.mllp  # noqa: E402

from bench.bench_ingest import draws, fresh, oru, quiet, start_for  # noqa: E402
from bench.machine import machine, write_result  # noqa: E402

GOAL = 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def echo_server(port: int) -> asyncio.AbstractServer:
    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while True:
                message = await reader.readmessage()
                writer.writemessage(message.create_ack())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await hl7.mllp.start_hl7_server(handle, host="127.0.0.1", port=port)


async def client(port: int, texts: list[str], connections: int) -> dict[str, float]:
    """Send `texts` over `connections`, one message in flight per connection."""
    latencies: list[float] = []
    acks: list[bytes] = []

    async def one(share: list[str]) -> None:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
        for text in share:
            start = time.perf_counter()
            writer.writeblock(text.encode())
            await writer.drain()
            acks.append(await reader.readblock())
            latencies.append(time.perf_counter() - start)
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(texts[i::connections]) for i in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    accepted = sum(b"MSA|AA" in a for a in acks)
    refused = [a for a in acks if b"MSA|AA" not in a]
    if refused:  # the benchmark's own made-up messages: safe to show
        print("  first refused ACK:", refused[0].decode(errors="replace").replace("\r", " | "))
    return {
        "messages": len(acks),
        "accepted": accepted,
        "seconds": elapsed,
        "rate": len(acks) / elapsed,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[int(len(latencies) * 0.99) - 1],
    }


async def bare(texts: list[str], connections: int) -> dict[str, float]:
    port = free_port()
    server = await echo_server(port)
    try:
        return await client(port, texts, connections)
    finally:
        server.close()
        await server.wait_closed()


def config_text(db: str, port: int) -> str:
    return f"""
[database]
url = "{db}"
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
console_only = true  # the benchmark pages nobody
sweep_seconds = 3600
escalation_seconds = 3600
[sources.mllp]
enabled = true
host = "127.0.0.1"
port = {port}
"""


async def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"monitor run did not listen on {port}")


async def ours(
    texts: list[str], connections: int, patients: int, tmp: Path, start: datetime
) -> dict[str, float]:
    db = f"sqlite:///{tmp / 'mllp.db'}"
    fresh(tmp, "mllp.db", patients, start).dispose()
    port = free_port()
    config = tmp / "monitor.toml"
    config.write_text(config_text(db, port))
    env = {**os.environ, "MONITOR_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run", "--no-web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port)
        return await client(port, texts, connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    quiet()
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4_000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--patients", type=int, default=400)
    args = ap.parse_args()
    # Results drawn in the hours before now (the daemon runs on the real clock).
    start = start_for(-(-args.messages // args.patients), datetime.now(UTC))
    texts = [oru(n, p, at) for n, p, at in draws(args.messages, args.patients, start)]
    with tempfile.TemporaryDirectory() as d:
        theirs = asyncio.run(bare(texts, args.connections))
        mine = asyncio.run(ours(texts, args.connections, args.patients, Path(d), start))
    ratio = mine["rate"] / theirs["rate"]
    met = ratio >= GOAL and mine["accepted"] == args.messages
    print(f"{args.messages:,} ORU over {args.connections} connections, ACK before next")
    print(
        f"  lab-monitor (ACK after commit) {mine['rate']:,.0f} msg/s, ACK p50 "
        f"{mine['p50_s'] * 1e3:.1f} ms p99 {mine['p99_s'] * 1e3:.1f} ms, "
        f"{mine['accepted']:,.0f} AA"
    )
    print(
        f"  bare hl7.mllp echo             {theirs['rate']:,.0f} msg/s, ACK p50 "
        f"{theirs['p50_s'] * 1e3:.1f} ms p99 {theirs['p99_s'] * 1e3:.1f} ms"
    )
    print(f"  {'met   ' if met else 'MISSED'} {ratio:.2f}x of the echo (goal >= {GOAL}x, all AA)")
    write_result(
        "mllp",
        {
            "messages": args.messages,
            "connections": args.connections,
            "lab_monitor": mine,
            "bare_echo": theirs,
            "ratio": ratio,
            "goal_met": met,
            "machine": machine(),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
