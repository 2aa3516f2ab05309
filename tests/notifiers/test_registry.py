"""The registry: built-ins by name, third-party plug-ins through entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import monitor.notifiers as registry
from monitor.notifiers import NotifierConfigError, load_notifier, register
from monitor.notifiers.base import Notification, SendResult
from monitor.notifiers.console import ConsoleNotifier
from monitor.notifiers.smtp_email import SmtpEmailNotifier
from monitor.notifiers.twilio_sms import TwilioSmsNotifier
from monitor.notifiers.webhook import WebhookNotifier
from monitor.secrets import SecretSource

SECRETS = SecretSource(
    env={
        "MONITOR_TWILIO_AUTH_TOKEN": "t",
        "MONITOR_SMTP_PASSWORD": "p",
        "MONITOR_WEBHOOK_SECRET": "w",
        "MONITOR_PAGER_TOKEN": "pager-token",
    }
)

PLUGIN_SOURCE = """
from typing import ClassVar

from monitor.notifiers.base import SendResult


class PagerNotifier:
    name: ClassVar[str] = "pager"

    def __init__(self, settings, secrets):
        self.settings = dict(settings)
        self.token = secrets.get("pager_token")

    async def send(self, notification):
        return SendResult("delivered", provider_id=f"pager-{notification.delivery_id}")

    async def lookup(self, notification):
        return None


class Misnamed(PagerNotifier):
    name = "something_else"


class NotAsync:
    name = "sync_pager"

    def send(self, notification):
        return None

    def lookup(self, notification):
        return None
"""

ENTRY_POINTS = """
[lab_monitor.notifiers]
pager = acme_pager:PagerNotifier
misnamed = acme_pager:Misnamed
sync_pager = acme_pager:NotAsync
broken = acme_pager_not_installed:Pager
"""


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plug-ins registered by one test must not leak into the next."""
    monkeypatch.setattr(registry, "NOTIFIERS", dict(registry.NOTIFIERS))


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real distribution on sys.path: a module plus a dist-info with entry_points.txt."""
    (tmp_path / "acme_pager.py").write_text(PLUGIN_SOURCE)
    dist_info = tmp_path / "acme_pager-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pager\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("acme_pager", None)


def test_built_ins_are_registered_by_name() -> None:
    built_ins = {
        "console": ConsoleNotifier,
        "smtp_email": SmtpEmailNotifier,
        "twilio_sms": TwilioSmsNotifier,
        "webhook": WebhookNotifier,
    }
    registered = registry.NOTIFIERS
    assert registered == built_ins


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("console", {}),
        ("twilio_sms", {"account_sid": "AC123", "from_number": "+15005550006"}),
        ("smtp_email", {"host": "smtp.example.org", "from_address": "a@example.org"}),
        ("webhook", {"url": "https://hooks.example.org/lab"}),
    ],
)
def test_load_notifier_builds_each_built_in(kind: str, settings: dict[str, Any]) -> None:
    notifier = load_notifier(kind, settings, SECRETS)

    assert type(notifier) is registry.NOTIFIERS[kind]
    assert notifier.name == kind


@pytest.mark.parametrize(
    ("kind", "settings", "key"),
    [
        ("twilio_sms", {"from_number": "+15005550006"}, "account_sid"),
        ("twilio_sms", {"account_sid": "AC/../x", "from_number": "+1"}, "account_sid"),
        ("twilio_sms", {"account_sid": "AC1", "from_number": 15005550006}, "from_number"),
        ("twilio_sms", {"account_sid": "AC1", "from_number": "+1", "timeout_s": -1}, "timeout_s"),
        ("smtp_email", {"from_address": "a@example.org"}, "host"),
        ("smtp_email", {"host": "h", "from_address": "a@example.org", "port": "25"}, "port"),
        ("smtp_email", {"host": "h", "from_address": "a@b.org", "timeout_s": True}, "timeout_s"),
        ("webhook", {"url": "https://x.example.org", "allow_http": "yes"}, "allow_http"),
        ("webhook", {"url": "https://x.example.org?token=1"}, "url"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_key(
    kind: str, settings: dict[str, Any], key: str
) -> None:
    with pytest.raises(NotifierConfigError) as info:
        load_notifier(kind, settings, SECRETS)

    assert str(info.value).startswith(f"{kind}: setting {key!r}")


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(NotifierConfigError, match=r"unknown notifier 'sms'.*console, smtp_email"):
        load_notifier("sms", {}, SECRETS)


def test_a_plugin_loads_from_its_entry_point(installed_plugin: Path) -> None:
    notifier = load_notifier("pager", {"service": "hepatology"}, SECRETS)

    assert type(notifier).__name__ == "PagerNotifier"
    assert notifier.settings == {"service": "hepatology"}  # type: ignore[attr-defined]
    assert "pager" in registry.NOTIFIERS


async def test_a_loaded_plugin_sends(installed_plugin: Path) -> None:
    notifier = load_notifier("pager", {}, SECRETS)
    notification = Notification(7, "A1", "P-1", "stop", "team", "s", "t A1")

    assert await notifier.send(notification) == SendResult("delivered", provider_id="pager-7")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("misnamed", "declares name 'something_else'; they must match"),
        ("sync_pager", "send must be an 'async def' method"),
        ("broken", "cannot load notifier plug-in 'broken' (acme_pager_not_installed:Pager)"),
    ],
)
def test_a_bad_plugin_is_refused_with_its_target_named(
    installed_plugin: Path, kind: str, message: str
) -> None:
    with pytest.raises(NotifierConfigError, match=_literal(message)):
        load_notifier(kind, {}, SECRETS)
    assert kind not in registry.NOTIFIERS


def test_register_refuses_to_replace_a_built_in() -> None:
    class FakeConsole:
        name: ClassVar[str] = "console"

        async def send(self, notification: Notification) -> SendResult:
            return SendResult("delivered")

        async def lookup(self, notification: Notification) -> SendResult | None:
            return None

    with pytest.raises(NotifierConfigError, match="'console' is already registered"):
        register(FakeConsole)
    assert register(ConsoleNotifier) is ConsoleNotifier  # re-registering itself is fine


def test_register_works_as_a_decorator() -> None:
    @register
    class Bleeper:
        name: ClassVar[str] = "bleeper"

        def __init__(self, settings: Any, secrets: SecretSource) -> None:
            pass

        async def send(self, notification: Notification) -> SendResult:
            return SendResult("delivered")

        async def lookup(self, notification: Notification) -> SendResult | None:
            return None

    assert isinstance(load_notifier("bleeper", {}, SECRETS), Bleeper)


def _literal(text: str) -> str:
    import re

    return re.escape(text)
