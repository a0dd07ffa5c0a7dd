"""The vendor's data dir: the names of its files and the reads of its state.

``vendor.key`` (Ed25519, 0600), ``vendor.json`` (0600: vendor id, vendor
token, broker address, the pinned broker id and public key),
``vendor.sqlite`` (unless ``--db-url`` / ``NETPAY_DB_URL``),
``web-secret.key`` and ``dashboard-password.argon2`` (vendor.dashboard) and,
with web workers, ``vendor-web.json`` (what each gunicorn worker needs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from netpay.envelope import load_or_create_key
from netpay.errors import InvalidArgument, PermissionDenied
from netpay.files import read_json
from netpay.sqlstore import sqlite_url
from vendor.services import VendorIdentity

__all__ = [
    "DB_ENV",
    "DB_FILE",
    "KEY_FILE",
    "STATE_FILE",
    "WEB_CONFIG_FILE",
    "database_url",
    "enrolled_identity",
    "enrolled_state",
    "load_state",
]

DB_ENV = "NETPAY_DB_URL"
DB_FILE = "vendor.sqlite"
KEY_FILE = "vendor.key"
STATE_FILE = "vendor.json"
WEB_CONFIG_FILE = "vendor-web.json"


def load_state(data_dir: Path) -> dict[str, Any]:
    """``vendor.json`` ({} before the first start); it must be mode 0600."""
    path = data_dir / STATE_FILE
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionDenied(f"{path} must be mode 0600, is {mode:04o}")
    return read_json(path)


def database_url(data_dir: Path, db_url: str | None) -> str:
    """``db_url``, else ``NETPAY_DB_URL``, else the data dir's SQLite file."""
    return db_url or os.environ.get(DB_ENV) or sqlite_url(data_dir / DB_FILE)


def enrolled_state(data_dir: Path) -> dict[str, Any]:
    """The state of a vendor that has enrolled with its broker."""
    state = load_state(data_dir)
    if not state.get("vendor_id") or not state.get("broker_public_key"):
        raise InvalidArgument(
            f"{data_dir} holds no enrolled vendor: run `netpay vendor serve` first"
        )
    return state


def enrolled_identity(data_dir: Path) -> VendorIdentity:
    """The enrolled vendor of ``data_dir`` (for commands that run beside the server)."""
    state = enrolled_state(data_dir)
    if not (data_dir / KEY_FILE).is_file():
        raise InvalidArgument(f"{data_dir} holds no vendor key ({KEY_FILE})")
    return VendorIdentity(
        vendor_id=str(state["vendor_id"]),
        key=load_or_create_key(data_dir / KEY_FILE),
        broker_id=str(state["broker_id"]),
        broker_public_key=bytes.fromhex(str(state["broker_public_key"])),
    )
