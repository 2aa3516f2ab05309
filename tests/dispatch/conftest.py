"""The daemon's rig (a Service on a pinned clock with fake Twilio and SMTP servers)."""

from tests.daemon.conftest import fake_twilio, rig, smtp_server, tls_files

__all__ = ["fake_twilio", "rig", "smtp_server", "tls_files"]
