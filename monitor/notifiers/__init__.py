"""Notifier plug-ins by channel kind: the built-ins, plus third parties' via entry points.

A third-party package declares, in its pyproject.toml::

    [project.entry-points."lab_monitor.notifiers"]
    pager = "acme_pager:PagerNotifier"

and `PagerNotifier(settings, secrets)` must satisfy `Notifier` with `name = "pager"`.
Built-in names cannot be taken over by a plug-in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar, cast

import structlog

from monitor.notifiers.base import Notification, Notifier, Outcome, SendResult
from monitor.notifiers.console import ConsoleNotifier
from monitor.notifiers.settings import NotifierConfigError
from monitor.notifiers.smtp_email import SmtpEmailNotifier
from monitor.notifiers.twilio_sms import TwilioSmsNotifier
from monitor.notifiers.webhook import WebhookNotifier
from monitor.secrets import SecretSource

__all__ = [
    "ENTRY_POINT_GROUP",
    "NOTIFIERS",
    "Notification",
    "Notifier",
    "NotifierConfigError",
    "Outcome",
    "SendResult",
    "load_notifier",
    "register",
]

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "lab_monitor.notifiers"


NOTIFIERS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: make `cls` loadable under `cls.name`.

    Registering another class under a taken name is refused, so a plug-in cannot
    silently replace a built-in transport.
    """
    name = _check_notifier_class(cls, origin=f"{cls.__module__}.{cls.__qualname__}")
    existing = NOTIFIERS.get(name)
    if existing is not None and existing is not cls:
        raise NotifierConfigError(
            f"notifier name {name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    NOTIFIERS[name] = cls
    return cls


def _check_notifier_class(obj: object, origin: str) -> str:
    """Fail at load time, naming the culprit, rather than at the first alert; the name."""
    if not inspect.isclass(obj):
        raise NotifierConfigError(f"{origin} is not a class")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise NotifierConfigError(f"{origin} has no string class attribute 'name'")
    for method in ("send", "lookup"):
        if not inspect.iscoroutinefunction(getattr(obj, method, None)):
            raise NotifierConfigError(f"{origin}.{method} must be an 'async def' method")
    return name


def _from_entry_point(name: str) -> type | None:
    """Import the plug-in class a distribution registered under `name`, if any."""
    # The same distribution reachable twice on sys.path lists the same target twice.
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    matches = list({ep.value: ep for ep in found}.values())
    if not matches:
        return None
    if len(matches) > 1:
        sources = ", ".join(ep.value for ep in matches)
        raise NotifierConfigError(f"notifier {name!r} is provided by several plug-ins: {sources}")
    ep = matches[0]
    try:
        obj: Any = ep.load()
    except Exception as exc:  # an import error inside someone else's package
        raise NotifierConfigError(
            f"cannot load notifier plug-in {name!r} ({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc
    _check_notifier_class(obj, origin=f"plug-in {name!r} ({ep.value})")
    if obj.name != name:
        raise NotifierConfigError(
            f"plug-in {name!r} ({ep.value}) declares name {obj.name!r}; they must match"
        )
    log.info("notifier_plugin_loaded", plugin=name, target=ep.value)
    plugin: type = register(obj)
    return plugin


def load_notifier(name: str, settings: Mapping[str, Any], secrets: SecretSource) -> Notifier:
    """Build the notifier for channel kind `name` from its settings table.

    Raises NotifierConfigError for an unknown kind, a broken plug-in, or bad settings
    (the message names the key).
    """
    cls = NOTIFIERS.get(name) or _from_entry_point(name)
    if cls is None:
        known = ", ".join(sorted(NOTIFIERS))
        raise NotifierConfigError(
            f"unknown notifier {name!r}: registered kinds are {known}; plug-ins register "
            f"under the entry point group {ENTRY_POINT_GROUP!r}"
        )
    factory = cast(Callable[[Mapping[str, Any], SecretSource], Notifier], cls)
    return factory(settings, secrets)


for _builtin in (ConsoleNotifier, SmtpEmailNotifier, TwilioSmsNotifier, WebhookNotifier):
    register(_builtin)


if TYPE_CHECKING:

    def _builtins_satisfy_protocol(
        c: ConsoleNotifier, s: SmtpEmailNotifier, t: TwilioSmsNotifier, w: WebhookNotifier
    ) -> list[Notifier]:
        """mypy checks each built-in against `Notifier` here."""
        return [c, s, t, w]
