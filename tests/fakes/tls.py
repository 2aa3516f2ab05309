"""A throwaway self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI.

(`cryptography` is not installed in this venv; the CLI is everywhere OpenSSL is.)
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSFiles", "make_self_signed"]


@dataclass(frozen=True)
class TLSFiles:
    cert: Path  # also the CA file clients trust
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_self_signed(directory: Path) -> TLSFiles:
    """Write cert.pem/key.pem valid for DNS:localhost and IP:127.0.0.1 into `directory`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return TLSFiles(cert=cert, key=key)
