"""What the Alertmanager comparisons share: one webhook receiver both sides deliver
to (each arrival timed), the daemon's RSS, and Debian's `prometheus-alertmanager`
started in memory with clustering off and group_wait 0."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Receiver(ThreadingHTTPServer):
    """Webhook receiver: `/am` for Alertmanager, anything else for lab-monitor. Each
    alert's key (our patient id, else our alert code; Alertmanager's `code` label)
    with the perf_counter time it first arrived."""

    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when a sender opens a
    # few dozen at once (a refused connection is a retry with backoff for either side)
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.arrived: dict[str, dict[str, float]] = {"monitor": {}, "am": {}}
        self.posts = {"monitor": 0, "am": 0}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client closing a kept-alive connection is not news

    def count(self, who: str) -> int:
        with self.lock:
            return len(self.arrived[who])

    def start(self) -> Receiver:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would
    # The status line and headers go out in one write and the body in another; with
    # Nagle on, the body waits for the sender's delayed ACK (~40 ms), so each kept-alive
    # connection could carry only ~25 requests a second whoever the sender was.
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        now = time.perf_counter()
        server: Receiver = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        who = "am" if self.path.startswith("/am") else "monitor"
        if who == "am":
            keys = [a["labels"]["code"] for a in body.get("alerts", [])]
        else:
            keys = [body.get("patient_id") or body["alert_code"]]
        with server.lock:
            for key in keys:
                server.arrived[who].setdefault(key, now)
            server.posts[who] += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alertmanager_binary() -> str | None:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "prometheus-alertmanager"],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@contextmanager
def alertmanager(receiver: Receiver, tmp: Path) -> Iterator[str | None]:
    """The v2 alerts API URL of a ready Alertmanager delivering to `receiver`/am, or
    None when it cannot be had on this machine."""
    binary = alertmanager_binary()
    if binary is None:
        yield None
        return
    port = free_port()
    (tmp / "am.yml").write_text(f"""
route:
  receiver: hook
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs:
      - url: "{receiver.url}/am"
        send_resolved: false
""")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'am.yml'}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/api/v2/alerts"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def post_alerts(api: str, codes: list[str]) -> None:
    """One v2 API POST of distinct stop alerts, keyed by their `code` label."""
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    alerts = [
        {
            "labels": {"alertname": "stop.transaminase", "code": code},
            "annotations": {"summary": "ALT above the stop line"},
            "endsAt": ends,
        }
        for code in codes
    ]
    request = urllib.request.Request(
        api, data=json.dumps(alerts).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).read()
