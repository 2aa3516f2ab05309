"""What every benchmark writes beside its figures: the machine they were measured on,
since only ratios measured in one run hold on a shared, noisy machine."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    mem = ""
    with open("/proc/meminfo") as f:
        mem = f.readline().split(":")[1].strip()
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, data: dict[str, object]) -> Path:
    """bench/results/<name>-<UTC time>.json"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps({"benchmark": name, "at": stamp, **data}, indent=2))
    return path


def shown(path: Path) -> str:
    """A result's path as printed: relative to the checkout when inside it."""
    root = RESULTS.parent.parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
