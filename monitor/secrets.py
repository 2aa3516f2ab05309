"""Secrets by name, never from config files.

Config names *which* secret a channel uses (`auth_token_secret = "twilio_auth_token"`);
the value comes from systemd's `LoadCredential=` directory first, so production never
needs secrets in the environment, and from `MONITOR_<NAME>` second, for development
and containers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MissingSecretError", "SecretSource"]

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class MissingSecretError(LookupError):
    """A secret is absent (or unusable) in every place we look; the message names them."""


class SecretSource:
    """Reads a secret by name: `$CREDENTIALS_DIRECTORY/<name>`, then `MONITOR_<NAME>`.

    `env` and `credentials_dir` default to the process environment; tests pass their
    own so they never depend on (or leak into) the real one. Values are read on each
    call and never cached or logged.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        credentials_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        if credentials_dir is None:
            credentials_dir = self._env.get("CREDENTIALS_DIRECTORY") or None
        self._dir = Path(credentials_dir) if credentials_dir is not None else None

    def __repr__(self) -> str:
        return f"SecretSource(credentials_dir={self._dir!s})"

    @staticmethod
    def env_var(name: str) -> str:
        """The environment variable that may hold secret `name`."""
        return f"MONITOR_{name.upper()}"

    def find(self, name: str) -> str | None:
        """The secret, or None when it is configured nowhere (an optional feature)."""
        try:
            return self.get(name)
        except MissingSecretError:
            return None

    def get(self, name: str) -> str:
        """The secret's value, with trailing newlines removed (credential files end in one)."""
        if not _NAME.fullmatch(name):
            # Also keeps a crafted name from reading outside the credentials directory.
            raise MissingSecretError(
                f"invalid secret name {name!r}: use letters, digits and '_' only"
            )
        var = self.env_var(name)
        if self._dir is not None:
            path = self._dir / name
            if path.is_file():
                try:
                    value = path.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    # Present but unreadable is a deployment error; do not silently
                    # fall back to another value.
                    raise MissingSecretError(
                        f"secret {name!r}: cannot read {path}: {exc.strerror}"
                    ) from None
                except UnicodeDecodeError:
                    raise MissingSecretError(
                        f"secret {name!r}: {path} is not valid UTF-8 text"
                    ) from None
                if not value:
                    raise MissingSecretError(f"secret {name!r}: {path} is empty")
                return value
            where_file = str(path)
        else:
            where_file = "$CREDENTIALS_DIRECTORY/" + name + " (CREDENTIALS_DIRECTORY is unset)"
        value = self._env.get(var, "")
        if value:
            return value
        raise MissingSecretError(
            f"secret {name!r} not found: looked in {where_file} and in environment variable {var}"
        )
