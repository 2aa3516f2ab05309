"""MLLP over TLS: the server's certificate and, optionally, the client CAs it trusts.

For sites where the lab link crosses a network. `tls_cert` and `tls_key` turn TLS
on (both or neither); `tls_client_ca` makes a client certificate signed by one of
those CAs required, so only the interface engine that holds one can connect (the
peer's address is never what is trusted). Paths are relative to the config file,
and `$CREDENTIALS_DIRECTORY` in them is expanded, so a key can come from systemd's
`LoadCredential=` and never sit readable in the config directory. TLS 1.2 is the
floor. Every problem names its key, for `monitor check-config` and for start-up.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TLSConfigError", "server_context"]


class TLSConfigError(ValueError):
    """A TLS setting that cannot be used; `key` is its path under `sources.mllp`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"sources.mllp.{key}: {message}")
        self.key = key
        self.reason = message


def _file(settings: Mapping[str, Any], key: str, base: Path) -> Path | None:
    value = settings.get(key)
    if value in (None, ""):
        return None
    path = Path(os.path.expandvars(str(value)))
    if "$" in str(path):
        raise TLSConfigError(key, f"{value!r} names an unset variable")
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise TLSConfigError(key, f"no readable file at {path}")
    return path


def server_context(settings: Mapping[str, Any], base: Path) -> ssl.SSLContext | None:
    """The TLS context `[sources.mllp]` asks for, or None for plain TCP."""
    cert = _file(settings, "tls_cert", base)
    key = _file(settings, "tls_key", base)
    client_ca = _file(settings, "tls_client_ca", base)
    if cert is None and key is None:
        if client_ca is not None:
            raise TLSConfigError("tls_client_ca", "needs tls_cert and tls_key (TLS is off)")
        return None
    if cert is None or key is None:
        missing = "tls_cert" if cert is None else "tls_key"
        raise TLSConfigError(missing, "tls_cert and tls_key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = f"certificate and key do not load together ({exc})"
        raise TLSConfigError("tls_key", reason) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError("tls_client_ca", f"not a CA certificate file ({exc})") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context
