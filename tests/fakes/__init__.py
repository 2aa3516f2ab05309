"""Fakes of external services, served for real on 127.0.0.1, reusable by any test."""
