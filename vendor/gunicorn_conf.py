"""gunicorn settings for the vendor's web tier (`--config python:vendor.gunicorn_conf`)."""

from __future__ import annotations

from typing import Any

from netpay.ready import die_with_parent

__all__ = ["on_starting"]


def on_starting(_server: Any) -> None:
    """The master stops (gracefully, SIGTERM) if the vendor process that started it dies."""
    die_with_parent()
