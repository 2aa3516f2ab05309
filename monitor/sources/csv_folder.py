"""`csv` source: a drop folder; each file is taken whole or not at all.

A file that can be used goes to `processed/`; one that cannot goes to
`quarantine/` with `<name>.error.txt` beside it naming the row and column. The
store is committed before the file moves, and a file seen again after a crash is
recognised row by row (its message ids), so nothing is stored twice.

Nothing in the folder is trusted: a symlink (which could point at a process's
environment or a key) or anything but a regular file is never opened; it is renamed
into `quarantine/` unread. Files are opened with O_NOFOLLOW and checked by `fstat`
on the open descriptor, so a file swapped for a link between the listing and the
open is refused too. A file over `max_file_bytes` (default 20 MiB) is set aside
unread. Everything written stays inside the folder: names come from the listing.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from monitor.sources.base import Ingest, Threads, content_name, timezone_of

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
        self.max_file_bytes = int(settings.get("max_file_bytes", 20 * 1024 * 1024))
        self.ingest = ingest
        self.now = now
        self.timezone = timezone_of(settings)
        self._warned: set[str] = set()
        self.threads = Threads("csv-folder", 1)

    async def start(self) -> None:
        for sub in ("", "processed", "quarantine"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        self.threads.close()

    async def scan(self) -> int:
        return await self.threads.run(self.scan_sync)

    def scan_sync(self) -> int:
        """Take every settled file once; returns how many files were handled."""
        handled = 0
        now = self.now().timestamp()
        with os.scandir(self.dir) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            path = self.dir / entry.name
            if entry.is_dir(follow_symlinks=False):
                continue  # processed/, quarantine/
            if not entry.is_file(follow_symlinks=False):
                kind = "a symbolic link" if entry.is_symlink() else "not a regular file"
                self.set_aside(path, f"{kind}: never opened")
                handled += 1
                continue
            if path.suffix.lower() not in SUFFIXES:
                if path.name not in self._warned:
                    self._warned.add(path.name)
                    log.warning(
                        "csv.ignored_file",
                        file=path.name,
                        reason=f"not one of {', '.join(SUFFIXES)}",
                    )
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < self.min_age_s:
                continue  # still being written
            self.take(path)
            handled += 1
        return handled

    def read(self, path: Path) -> bytes | str:
        """The file's bytes, or why it is not read: never through a link, never more
        than `max_file_bytes`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            return f"cannot be opened without following a link ({exc.strerror})"
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                return "not a regular file: never read"
            if info.st_size > self.max_file_bytes:
                return (
                    f"{info.st_size:,} bytes is over the limit of {self.max_file_bytes:,} "
                    "([sources.csv] max_file_bytes): not read"
                )
            data = f.read(self.max_file_bytes + 1)
        if len(data) > self.max_file_bytes:
            return f"grew past the limit of {self.max_file_bytes:,} bytes while read: not taken"
        return data

    def set_aside(self, path: Path, reason: str) -> None:
        """Rename (never follow) into quarantine/, with the reason beside it."""
        target = self.dir / "quarantine" / path.name
        try:
            os.rename(path, target)
        except OSError as exc:
            log.error("csv.set_aside_failed", file=path.name, error=exc.strerror)
            return
        report = target.with_name(target.name + ".error.txt")
        report.write_text(f"{path.name} was not taken in: {reason}.\n", encoding="utf-8")
        log.warning("csv.set_aside", file=path.name, reason=reason)

    def take(self, path: Path) -> None:
        raw = self.read(path)
        if isinstance(raw, str):
            self.set_aside(path, raw)
            return
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
