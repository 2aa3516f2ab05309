"""Where the shipped config, examples and the site's config live: one place to ask.

A wheel carries `config/` and `examples/` as the packages `monitor._config` and
`monitor._examples`; a checkout (editable install or `pytest` from the repo) uses the
top-level directories themselves, so the repo's `config/` stays the one editable source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent

ETC_CONFIG = Path("/etc/lab-monitor/monitor.toml")


def _shipped(packaged: str, checkout: str) -> Path:
    inside = _PACKAGE / packaged
    return inside if inside.is_dir() else _CHECKOUT / checkout


def shipped_config_dir() -> Path:
    """The demo config, profiles and mapping that ship with this version."""
    return _shipped("_config", "config")


def shipped_examples_dir() -> Path:
    """The example patients `monitor demo` enrols."""
    return _shipped("_examples", "examples")


@dataclass(frozen=True)
class ConfigChoice:
    path: Path
    source: str  # in words, for logs and check-config: why this file


def find_config(explicit: str | Path | None = None, etc: Path | None = None) -> ConfigChoice:
    """--config, else $MONITOR_CONFIG, else /etc/lab-monitor/monitor.toml, else the
    packaged demo default. An explicit choice is taken even if missing (the loader then
    says so), so a typo never silently falls through to the demo."""
    if explicit:
        return ConfigChoice(Path(explicit), "--config")
    env = os.environ.get("MONITOR_CONFIG")
    if env:
        return ConfigChoice(Path(env), "$MONITOR_CONFIG")
    site = etc if etc is not None else ETC_CONFIG
    if site.is_file():
        return ConfigChoice(site, str(site))
    return ConfigChoice(shipped_config_dir() / "monitor.toml", "the packaged demo default")


def package_version() -> str:
    """The installed distribution's version (pyproject.toml is its single source)."""
    try:
        return metadata.version("lab-monitor")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0+unknown"
