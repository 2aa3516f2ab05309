"""SecretSource: systemd credentials first, then MONITOR_<NAME>, never config files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.secrets import MissingSecretError, SecretSource


def test_credentials_directory_wins_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / "twilio_auth_token").write_text("from-file\n")
    source = SecretSource(env={"MONITOR_TWILIO_AUTH_TOKEN": "from-env"}, credentials_dir=tmp_path)

    assert source.get("twilio_auth_token") == "from-file"  # trailing newline dropped


def test_environment_is_the_fallback(tmp_path: Path) -> None:
    source = SecretSource(env={"MONITOR_TWILIO_AUTH_TOKEN": "from-env"}, credentials_dir=tmp_path)

    assert source.get("twilio_auth_token") == "from-env"


def test_credentials_directory_comes_from_the_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "smtp_password").write_text("pw")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))

    assert SecretSource().get("smtp_password") == "pw"
    assert SecretSource(env={"CREDENTIALS_DIRECTORY": str(tmp_path)}).get("smtp_password") == "pw"


def test_missing_secret_names_both_places(tmp_path: Path) -> None:
    with pytest.raises(MissingSecretError) as info:
        SecretSource(env={}, credentials_dir=tmp_path).get("webhook_secret")

    message = str(info.value)
    assert str(tmp_path / "webhook_secret") in message
    assert "MONITOR_WEBHOOK_SECRET" in message


def test_missing_secret_without_credentials_directory_says_it_is_unset() -> None:
    with pytest.raises(MissingSecretError, match=r"CREDENTIALS_DIRECTORY is unset.*MONITOR_X"):
        SecretSource(env={}).get("x")


def test_empty_values_are_missing(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("\n")
    source = SecretSource(env={"MONITOR_B": ""}, credentials_dir=tmp_path)

    with pytest.raises(MissingSecretError, match="is empty"):
        source.get("a")
    with pytest.raises(MissingSecretError, match="MONITOR_B"):
        source.get("b")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_credential_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_text("secret")
    path.chmod(0)
    source = SecretSource(env={"MONITOR_A": "from-env"}, credentials_dir=tmp_path)

    with pytest.raises(MissingSecretError, match="cannot read"):
        source.get("a")


def test_a_credential_that_is_not_text_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\xff\xfe\x00")
    source = SecretSource(env={"MONITOR_A": "from-env"}, credentials_dir=tmp_path)

    with pytest.raises(MissingSecretError, match="not valid UTF-8"):
        source.get("a")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", "twilio.token"])
def test_names_cannot_leave_the_credentials_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(MissingSecretError, match="invalid secret name"):
        SecretSource(env={}, credentials_dir=tmp_path).get(name)


def test_repr_shows_no_values(tmp_path: Path) -> None:
    source = SecretSource(env={"MONITOR_A": "hunter2"}, credentials_dir=tmp_path)
    assert "hunter2" not in repr(source)
