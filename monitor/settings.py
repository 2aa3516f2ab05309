"""The service's own configuration (`config/monitor.toml`), loaded and checked once.

Clinical policy is not here: it lives in the protocol profiles this file points at.
Secrets are not here either: they come from the environment or systemd credentials.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.core.protocol import Protocol, ProtocolError, load_protocols
from monitor.paths import find_config, shipped_config_dir

DEFAULT_CONFIG = Path("config/monitor.toml")


class SettingsError(ValueError):
    """A configuration problem; the message names the file and key."""


@dataclass(frozen=True)
class Settings:
    path: Path
    database_url: str
    protocols_dir: Path
    default_protocol: str
    raw: dict[str, Any] = field(default_factory=dict)
    source: str = "--config"  # how the file was found (see monitor.paths.find_config)

    @property
    def mapping_path(self) -> Path | None:
        """Lab code and unit mapping: `[sources] mapping` (relative to this file), else a
        `mapping.toml` beside this file, else None (the shipped default)."""
        sources = self.raw.get("sources", {})
        name = sources.get("mapping") if isinstance(sources, dict) else None
        if name:
            p = Path(str(name))
            return p if p.is_absolute() else self.path.parent / p
        beside = self.path.parent / "mapping.toml"
        return beside if beside.exists() else None

    def protocols(self) -> dict[str, Protocol]:
        try:
            protocols = load_protocols(self.protocols_dir)
        except ProtocolError as exc:
            raise SettingsError(str(exc)) from exc
        if self.default_protocol not in protocols:
            raise SettingsError(
                f"{self.path}: protocols.default: no profile {self.default_protocol!r} in "
                f"{self.protocols_dir} (found: {', '.join(sorted(protocols))})"
            )
        return protocols


def state_dir() -> Path:
    """systemd's StateDirectory when run as a service, ./var otherwise."""
    return Path(os.environ.get("STATE_DIRECTORY", "var").split(":")[0])


SHIPPED_CONFIG = shipped_config_dir() / "monitor.toml"


def config_path(explicit: str | Path | None = None) -> Path:
    """The lookup order of `monitor.paths.find_config`."""
    return find_config(explicit).path


def load_settings(path: str | Path | None = None) -> Settings:
    choice = find_config(path)
    p = choice.path
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"{p}: no such config file (use --config or MONITOR_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{p}: not valid TOML ({exc})") from exc
    db = raw.get("database", {})
    protos = raw.get("protocols", {})
    if not isinstance(db, dict) or not isinstance(protos, dict):
        raise SettingsError(f"{p}: [database] and [protocols] must be tables")
    url = os.environ.get("MONITOR_DATABASE_URL") or db.get("url") or ""
    if not isinstance(url, str):
        raise SettingsError(f"{p}: database.url must be a string")
    if not url:
        url = f"sqlite:///{state_dir() / 'lab-monitor.db'}"
    directory = protos.get("dir", "protocols")
    default = protos.get("default")
    if not isinstance(directory, str):
        raise SettingsError(f"{p}: protocols.dir must be a string")
    if not isinstance(default, str) or not default:
        raise SettingsError(f"{p}: protocols.default must name a profile id")
    pdir = Path(directory)
    if not pdir.is_absolute():
        pdir = p.parent / pdir
    return Settings(
        path=p,
        database_url=url,
        protocols_dir=pdir,
        default_protocol=default,
        raw=raw,
        source=choice.source,
    )
