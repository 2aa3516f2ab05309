from tests.daemon.conftest import fake_twilio, rig, smtp_server, tls_files

__all__ = ["fake_twilio", "rig", "smtp_server", "tls_files"]
