"""MLLP over TLS: a client with a certificate from the trusted CA is served; one with
another CA's certificate, none at all, or plain TCP never reaches the handler.

Certificates are made by the real `openssl` command for each test session (a CA, a
server certificate for 127.0.0.1, a good client and a client from a rogue CA)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from monitor.config_check import check
from monitor.secrets import SecretSource
from monitor.sources.mllp import MLLPDecoder, MLLPServer, frame
from monitor.sources.mllp_tls import TLSConfigError, server_context
from tests.helpers import ROOT

MESSAGE = "MSH|^~\\&|A|B|C|D|20240301||ORU^R01|T1|P|2.5.1\rPID|1||X\r"
ACK = "MSH|^~\\&|MON|||||ACK|AT1|P|2.5.1\rMSA|AA|T1\r"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(name: str, cwd: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)


def _ca(name: str, cwd: Path) -> None:
    _key(name, cwd)
    _openssl(
        "req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem",
        "-days", "2", "-subj", f"/CN={name}", cwd=cwd,
    )  # fmt: skip


def _signed(name: str, ca: str, cwd: Path, ext: str) -> None:
    _key(name, cwd)
    _openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca("ca", d)
    _ca("rogue", d)
    _signed("server", "ca", d, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _signed("client", "ca", d, "extendedKeyUsage=clientAuth\n")
    _signed("intruder", "rogue", d, "extendedKeyUsage=clientAuth\n")
    return d


def _settings(pki: Path) -> dict[str, str]:
    return {"tls_cert": "server.pem", "tls_key": "server.key", "tls_client_ca": "ca.pem"}


def _client(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return ctx


async def _send(port: int, tls: ssl.SSLContext | None) -> bytes | None:
    """One message; its ACK, or None when the server closed or refused the connection."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=tls), 10
        )
        writer.write(frame(MESSAGE))
        await writer.drain()
        decoder = MLLPDecoder()
        while True:
            data = await asyncio.wait_for(reader.read(4096), 10)
            if not data:
                return None
            if got := decoder.feed(data):
                writer.close()
                return got[0]
    except (ssl.SSLError, ConnectionError, OSError):
        return None


async def _serve(pki: Path, tls: ssl.SSLContext | None) -> tuple[bytes | None, list[str]]:
    seen: list[str] = []

    async def handler(text: str) -> str:
        seen.append(text)
        return ACK

    context = server_context(_settings(pki), pki)
    async with MLLPServer("127.0.0.1", 0, handler, tls=context, frame_timeout=5) as server:
        ack = await _send(server.port, tls)
    return ack, seen


async def test_a_client_with_a_trusted_certificate_is_served(pki: Path) -> None:
    ack, seen = await _serve(pki, _client(pki, "client"))
    assert ack is not None and b"MSA|AA|T1" in ack
    assert seen == [MESSAGE]


@pytest.mark.parametrize("cert", ["intruder", None], ids=["rogue-ca", "no-certificate"])
async def test_a_client_without_an_accepted_certificate_never_reaches_the_handler(
    pki: Path, cert: str | None
) -> None:
    ack, seen = await _serve(pki, _client(pki, cert))
    assert ack is None
    assert seen == []


async def test_plain_tcp_to_a_tls_listener_gets_no_ack(pki: Path) -> None:
    ack, seen = await _serve(pki, None)
    assert ack is None
    assert seen == []


def test_without_tls_keys_the_listener_is_plain_tcp(pki: Path) -> None:
    assert server_context({}, pki) is None


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"tls_cert": "server.pem"}, "tls_key"),
        ({"tls_cert": "server.pem", "tls_key": "missing.key"}, "tls_key"),
        ({"tls_cert": "server.pem", "tls_key": "client.key"}, "tls_key"),
        ({"tls_client_ca": "ca.pem"}, "tls_client_ca"),
        ({"tls_cert": "server.pem", "tls_key": "server.key", "tls_client_ca": "server.key"},
         "tls_client_ca"),
    ],
    ids=["cert-without-key", "missing-key-file", "key-of-another-cert", "ca-without-tls", "bad-ca"],
)  # fmt: skip
def test_unusable_tls_settings_name_their_key(
    pki: Path, settings: dict[str, str], key: str
) -> None:
    with pytest.raises(TLSConfigError) as caught:
        server_context(settings, pki)
    assert caught.value.key == key


def test_credentials_directory_is_expanded(pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(pki))
    settings = {"tls_cert": "$CREDENTIALS_DIRECTORY/server.pem", "tls_key": "server.key"}
    assert server_context(settings, pki) is not None
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(TLSConfigError, match="unset variable"):
        server_context(settings, Path("/nonexistent"))


def test_check_config_names_the_tls_key(pki: Path, tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///:memory:"

[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"

[sources.mllp]
enabled = true
tls_cert = "{pki / "server.pem"}"
tls_key = "{pki / "client.key"}"
"""
    )
    checked = check(config, SecretSource(env={}))
    assert [p.path for p in checked.problems] == ["sources.mllp.tls_key"]


def test_the_listener_reads_tls_paths_relative_to_the_config_file(pki: Path) -> None:
    from monitor.sources.mllp_listener import MLLPListener

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("not called")

    listener = MLLPListener({"port": 0, **_settings(pki)}, never, base_dir=pki)  # type: ignore[arg-type]
    assert listener.server.tls is not None
    assert listener.server.tls.verify_mode == ssl.CERT_REQUIRED
