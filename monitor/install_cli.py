"""`monitor --version` and `monitor init DIR`: what an installed copy is and owns.

Kept apart from cli.py so the commands a site uses to set itself up stay small.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from monitor.paths import find_config, package_version, shipped_config_dir


def version_lines(config: Path | None = None) -> list[str]:
    """The package version, then each loaded profile's id and version (or why none)."""
    from monitor.settings import SettingsError, load_settings

    lines = [f"lab-monitor {package_version()}"]
    try:
        settings = load_settings(config)
        protocols = settings.protocols()
    except SettingsError as exc:
        return [*lines, f"profiles: not loaded ({exc})"]
    lines.append(f"config: {settings.path} ({settings.source})")
    lines += [f"profile {p.id} {p.version}" for p in protocols.values()]
    return lines


def version_callback(value: bool) -> None:
    if value:
        for line in version_lines(find_config(None).path):
            typer.echo(line)
        raise typer.Exit()


def init_config(target: Path, force: bool = False) -> list[Path]:
    """Copy the shipped demo config (and the production example, when this version has
    one) into `target` for a site to own and edit. Refuses to overwrite unless forced."""
    source = shipped_config_dir()
    files = sorted(p for p in source.rglob("*.toml") if p.is_file())
    clashes = [target / p.relative_to(source) for p in files]
    clashes = [p for p in clashes if p.exists()]
    if clashes and not force:
        raise FileExistsError(
            f"{target}: would overwrite {', '.join(str(p) for p in clashes)} (use --force)"
        )
    written = []
    for p in files:
        dest = target / p.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
        written.append(dest)
    return written
