"""Validation of a `[channels.<name>]` table, so a typo fails at startup, not at 3 a.m.

Each notifier reads its keys through `ChannelSettings`; `finish()` then rejects any key
nobody read, which catches `timeout = 5` written for `timeout_s = 5`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from monitor.secrets import MissingSecretError, SecretSource

__all__ = ["ChannelSettings", "NotifierConfigError", "is_loopback_host"]


class NotifierConfigError(ValueError):
    """A channel's settings are wrong; the message names the channel kind and the key."""


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback IPs: the only hosts allowed without TLS."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChannelSettings:
    """Typed, key-naming accessors over one settings mapping."""

    def __init__(self, kind: str, settings: Mapping[str, Any]) -> None:
        if not isinstance(settings, Mapping):
            raise NotifierConfigError(f"{kind}: settings must be a table, not {settings!r}")
        self.kind = kind
        self._settings = settings
        self._read: set[str] = set()

    def error(self, key: str, problem: str) -> NotifierConfigError:
        """An error naming the channel kind and the key."""
        return NotifierConfigError(f"{self.kind}: setting {key!r} {problem}")

    def _get(self, key: str) -> Any:
        self._read.add(key)
        return self._settings.get(key)

    def string(self, key: str, default: str | None = None) -> str:
        """A required non-empty string (or `default` when given and the key is absent)."""
        value = self.optional_str(key)
        if value is None:
            if default is None:
                raise self.error(key, "is required")
            return default
        return value

    def optional_str(self, key: str) -> str | None:
        """A non-empty string, or None when absent."""
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value.strip()

    def positive_float(self, key: str, default: float) -> float:
        """A number > 0 (TOML ints accepted, booleans refused)."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {type(value).__name__}")
        if not value > 0:
            raise self.error(key, f"must be greater than 0, got {value}")
        return float(value)

    def port(self, key: str, default: int) -> int:
        """A TCP port number."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {type(value).__name__}")
        if not 0 < value < 65536:
            raise self.error(key, f"must be between 1 and 65535, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """A TOML boolean (strings like "false" are refused: they are truthy)."""
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """One of `choices`."""
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def url(self, key: str, default: str | None = None, *, allow_http: bool = False) -> str:
        """An absolute http(s) URL without a trailing slash.

        Plain http is accepted only for loopback hosts unless `allow_http`: these
        URLs carry credentials or patient identifiers.
        """
        value = self.string(key, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(key, f"must be an absolute http(s) URL, got {value!r}")
        if parts.scheme == "http" and not allow_http and not is_loopback_host(parts.hostname):
            raise self.error(key, f"must use https (http is allowed for loopback only): {value!r}")
        if parts.query or parts.fragment:
            raise self.error(key, f"must not have a query or fragment: {value!r}")
        return value

    def secret(self, key: str, default_name: str, secrets: SecretSource) -> str:
        """Read the secret whose *name* is the setting `key` (default `default_name`)."""
        name = self.string(key, default_name)
        try:
            return secrets.get(name)
        except MissingSecretError as exc:
            raise NotifierConfigError(f"{self.kind}: setting {key!r}: {exc}") from None

    def finish(self) -> None:
        """Refuse keys no accessor read: they are typos or settings for another kind."""
        unknown = sorted(set(self._settings) - self._read)
        if unknown:
            raise NotifierConfigError(
                f"{self.kind}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(self._read))}"
            )
