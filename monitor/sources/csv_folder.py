"""`csv` source: a drop folder; each file is taken whole or not at all.

A file that can be used goes to `processed/`; one that cannot goes to
`quarantine/` with `<name>.error.txt` beside it naming the row and column. The
store is committed before the file moves, and a file seen again after a crash is
recognised row by row (its message ids), so nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from monitor.sources.base import Ingest, content_name, timezone_of

log = structlog.get_logger(__name__)

SUFFIXES = (".csv", ".tsv", ".txt")


class CSVFolder:
    name = "csv"

    def __init__(
        self, settings: Mapping[str, Any], ingest: Ingest, base: Path, now: Callable[[], datetime]
    ) -> None:
        """A relative `dir` is taken from `base`, the service's state directory."""
        folder = Path(str(settings.get("dir", "inbox")))
        self.dir = folder if folder.is_absolute() else base / folder
        self.min_age_s = float(settings.get("min_age_s", 2.0))
        self.ingest = ingest
        self.now = now
        self.timezone = timezone_of(settings)
        self._warned: set[str] = set()

    async def start(self) -> None:
        for sub in ("", "processed", "quarantine"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    async def scan(self) -> int:
        return await asyncio.to_thread(self.scan_sync)

    def scan_sync(self) -> int:
        """Take every settled file once; returns how many files were handled."""
        handled = 0
        now = self.now().timestamp()
        for path in sorted(p for p in self.dir.iterdir() if p.is_file()):
            if path.suffix.lower() not in SUFFIXES:
                if path.name not in self._warned:
                    self._warned.add(path.name)
                    log.warning(
                        "csv.ignored_file",
                        file=path.name,
                        reason=f"not one of {', '.join(SUFFIXES)}",
                    )
                continue
            if now - path.stat().st_mtime < self.min_age_s:
                continue  # still being written
            self.take(path)
            handled += 1
        return handled

    def take(self, path: Path) -> None:
        raw = path.read_bytes()
        out = self.ingest(
            raw,
            "csv",
            self.name,
            whole=True,
            assume_tz=self.timezone,
            source_name=content_name(path.name, raw),
        )
        if out.quarantine_id is None:
            shutil.move(str(path), self.dir / "processed" / path.name)
            log.info("csv.processed", file=path.name, stored=out.stored, duplicates=out.duplicates)
            return
        target = self.dir / "quarantine" / path.name
        shutil.move(str(path), target)
        report = target.with_name(target.name + ".error.txt")
        report.write_text(
            f"{path.name} was not taken in (quarantine item {out.quarantine_id}).\n"
            f"{out.reason}\n" + "".join(f"- {p}\n" for p in out.problems),
            encoding="utf-8",
        )
        log.warning("csv.quarantined", file=path.name, quarantine_id=out.quarantine_id)
